"""Speed of the batched gradient-inversion loop (paper 001, Algorithm 1) for 1, 16 and 128 simultaneous victims.

All victims of one attack advance together: one vmapped dummy-gradient computation, one distance and one
double-backward pass per iteration. ``iterations_per_s`` counts attack iterations of the whole batch,
``victim_iterations_per_s`` multiplies by the number of victims. ``relative_cost`` is the time of one attack
iteration over the time of one forward+backward of the model on a batch of the same V images (the work of one
training step on them); double backpropagation puts its floor at about 3x. Medians after a warm-up.

    python benchmarks/inversion.py [--device cuda] [--iterations 30] [--defenses cvb] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fedleak.attacks.inversion import reconstruct
from fedleak.attacks.inversion.presets import PRESETS
from fedleak.attacks.inversion.victims import victim_case
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_backward_s(model, x, y, device, repeats: int) -> float:
    batch_gradients(model, x, y)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        batch_gradients(model, x, y)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(victims: int, attack: str, defenses: str, iterations: int, device: torch.device) -> dict:
    data = load_dataset("bundled", size=(32, 32))
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:victims]
    images, labels = data.inputs(idx), data.y[idx]
    torch.manual_seed(0)
    model = build_model("cnn", data.info.input_shape, data.info.num_classes)
    case = victim_case(model, "cnn", defenses, images, labels, device=device)
    config = PRESETS[attack].with_(max_iterations=iterations, patience=iterations, plateau=iterations)
    reconstruct(config.with_(max_iterations=3), case.model, case.received, case.knowledge, device=device)  # warm-up
    _sync(device)
    result = reconstruct(config, case.model, case.received, case.knowledge, device=device)
    per_iteration = result.info["seconds"] / iterations
    training = case.model.train()
    forward_backward = _forward_backward_s(training, case.images, case.labels, device, repeats=max(5, iterations))
    return {
        "victims": victims,
        "iterations_per_s": round(1 / per_iteration, 2),
        "victim_iterations_per_s": round(victims / per_iteration, 1),
        "ms_per_iteration": round(1000 * per_iteration, 2),
        "forward_backward_ms": round(1000 * forward_backward, 3),
        "relative_cost": round(per_iteration / forward_backward, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--iterations", type=int, default=30, help="timed attack iterations per case (default 30)")
    parser.add_argument("--victims", default="1,16,128", help="comma-separated victim counts (default 1,16,128)")
    parser.add_argument("--attack", default="ig", help="attack preset (default ig)")
    parser.add_argument("--defenses", default="", help="client defenses, e.g. dropout,cvb (default none)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    counts = [int(v) for v in args.victims.split(",")]
    results = [bench(v, args.attack, args.defenses, args.iterations, device) for v in counts]
    report = {"device": str(device), "torch_threads": torch.get_num_threads(), "attack": args.attack,
              "defenses": args.defenses or "none", "model": "cnn", "input": [1, 32, 32], "cases": results}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.attack} attack on the cnn (1x32x32), defenses: {args.defenses or 'none'}; {device}, "
          f"{torch.get_num_threads()} threads, {args.iterations} iterations")
    for r in results:
        print(f"  {r['victims']:4d} victims: {r['iterations_per_s']:8.2f} it/s ({r['victim_iterations_per_s']:9.1f} "
              f"victim-it/s, {r['ms_per_iteration']:.2f} ms/it); one iteration = {r['relative_cost']:.2f}x a "
              f"forward+backward on the same {r['victims']} images ({r['forward_backward_ms']:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
