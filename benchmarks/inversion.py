"""Speed of the batched gradient-inversion loop (paper 001, Algorithm 1) for 1, 16 and 128 simultaneous victims,
measured in the same run against the per-victim loop that breaching and most peers run.

The reference loop, written here: for each victim on its own, Adam (``torch.optim.Adam``) on one dummy image;
each iteration a forward, ``torch.autograd.grad(..., create_graph=True)`` for the dummy gradient, the same
objective (the attack's distance + TV prior, cross-entropy with the true label), a backward to the image, the
box projection. It runs the victims one after the other, so its victim-iterations per second do not depend on
the number of victims; it is timed on ``min(V, --loop-victims)`` victims.

``speedup_vs_loop``: victim-iterations per second, fedleak over the loop. ``iteration_vs_fwd_bwd``: the time of
one fedleak attack iteration over one forward+backward of the model on a batch of the same V images (the work of
one training step on them); double backpropagation puts its floor at about 3x. Both are timed in blocks of
``--iterations`` (an attack run, as many forward+backwards), interleaved, after a warm-up; medians of ``--blocks``.

    python benchmarks/inversion.py [--device cuda] [--iterations 30] [--defenses cvb] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from fedleak.attacks.inversion import invert
from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.attacks.inversion.presets import PRESETS
from fedleak.attacks.inversion.regularizers import total_variation
from fedleak.cases.victims import victim_case
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

INPUT_SHAPE = (3, 32, 32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_backward_s(model, x, y, device, repeats: int) -> float:
    """Seconds per forward+backward, timed over a block of ``repeats`` of them (as the attack's iterations)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        batch_gradients(model, x, y)
    _sync(device)
    return (time.perf_counter() - start) / repeats


def reference_loop(model, received: dict[str, torch.Tensor], labels: torch.Tensor, config, iterations: int,
                   device: torch.device) -> float:
    """Seconds per victim-iteration of the per-victim attack loop (plain autograd + torch.optim.Adam)."""
    names = list(received)
    params = dict(model.named_parameters())
    weights = [params[n].detach().requires_grad_(True) for n in names]
    by_name = dict(zip(names, weights))
    others = {n: p.detach() for n, p in params.items() if n not in by_name}
    low, high = 0.0, 1.0
    generator = torch.Generator().manual_seed(0)
    _sync(device)
    start = time.perf_counter()
    for v in range(len(labels)):
        distance = DISTANCES.get(config.distance)({n: g[v : v + 1] for n, g in received.items()}, names)
        x = torch.randn((1, *INPUT_SHAPE), generator=generator).to(device).requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=config.lr)
        for _ in range(iterations):
            optimizer.zero_grad()
            outputs = torch.func.functional_call(model, {**by_name, **others}, (x,))
            grads = torch.autograd.grad(F.cross_entropy(outputs, labels[v : v + 1]), weights, create_graph=True)
            loss = distance({n: g.unsqueeze(0) for n, g in zip(names, grads)})
            loss = loss + config.tv_weight * total_variation(x)
            loss.sum().backward()
            if config.signed:
                x.grad.sign_()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(low, high)
    _sync(device)
    return (time.perf_counter() - start) / (len(labels) * iterations)


def bench(victims: int, attack: str, defenses: str, iterations: int, loop_victims: int, device: torch.device,
          blocks: int = 3) -> dict:
    data = load_dataset("bundled", size=INPUT_SHAPE[1:])
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:victims]
    images, labels = data.inputs(idx).expand(-1, INPUT_SHAPE[0], -1, -1).contiguous(), data.y[idx]
    torch.manual_seed(0)
    model = build_model("cnn", INPUT_SHAPE, data.info.num_classes)
    case = victim_case(model, "cnn", defenses, images, labels, device=device)
    config = PRESETS[attack].with_(max_iterations=iterations, patience=iterations, plateau=iterations)
    invert(config.with_(max_iterations=3), case.observed, case.knowledge, device=device)  # warm-up
    training = case.model.train()
    _forward_backward_s(training, case.images, case.labels, device, repeats=1)  # warm-up
    attack_s, forward_backward_s = [], []
    for _ in range(blocks):  # interleaved blocks of as many iterations: load on a shared machine weighs on both
        _sync(device)
        result = invert(config, case.observed, case.knowledge, device=device)
        attack_s.append(result.info["seconds"] / iterations)
        forward_backward_s.append(_forward_backward_s(training, case.images, case.labels, device, iterations))
    per_iteration, forward_backward = statistics.median(attack_s), statistics.median(forward_backward_s)
    looped = min(victims, loop_victims)
    received = {n: g[:looped].to(device) for n, g in case.observed.updates.items()}
    reference_loop(training, {n: g[:1] for n, g in received.items()}, case.labels[:1], config, 3, device)  # warm-up
    loop_s = reference_loop(training, received, case.labels[:looped], config, iterations, device)
    return {
        "victims": victims,
        "iterations_per_s": round(1 / per_iteration, 2),
        "victim_iterations_per_s": round(victims / per_iteration, 1),
        "loop_victim_iterations_per_s": round(1 / loop_s, 1),
        "speedup_vs_loop": round(loop_s * victims / per_iteration, 2),
        "ms_per_iteration": round(1000 * per_iteration, 2),
        "forward_backward_ms": round(1000 * forward_backward, 3),
        "iteration_vs_fwd_bwd": round(per_iteration / forward_backward, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--iterations", type=int, default=30, help="timed attack iterations per case (default 30)")
    parser.add_argument("--victims", default="1,16,128", help="comma-separated victim counts (default 1,16,128)")
    parser.add_argument("--loop-victims", type=int, default=4,
                        help="victims the reference loop is timed on (default 4; its rate does not depend on V)")
    parser.add_argument("--attack", default="ig", help="attack preset (default ig)")
    parser.add_argument("--defenses", default="", help="client defenses, e.g. dropout,cvb (default none)")
    parser.add_argument("--blocks", type=int, default=3,
                        help="timed blocks of attack iterations and of forward+backwards, interleaved (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    counts = [int(v) for v in args.victims.split(",")]
    results = [bench(v, args.attack, args.defenses, args.iterations, args.loop_victims, device, args.blocks)
               for v in counts]
    report = {"device": str(device), "torch_threads": torch.get_num_threads(), "attack": args.attack,
              "defenses": args.defenses or "none", "model": "cnn", "input": list(INPUT_SHAPE),
              "speedup_vs_loop": {str(r["victims"]): r["speedup_vs_loop"] for r in results},
              "iteration_vs_fwd_bwd": {str(r["victims"]): r["iteration_vs_fwd_bwd"] for r in results},
              "cases": results}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.attack} attack on the cnn ({'x'.join(map(str, INPUT_SHAPE))}), defenses: "
          f"{args.defenses or 'none'}; {device}, {torch.get_num_threads()} threads, {args.iterations} iterations")
    for r in results:
        print(f"  {r['victims']:4d} victims: {r['victim_iterations_per_s']:9.1f} victim-it/s, "
              f"{r['speedup_vs_loop']:.2f}x the per-victim loop ({r['loop_victim_iterations_per_s']:.1f}); one "
              f"iteration = {r['iteration_vs_fwd_bwd']:.2f}x a forward+backward on the same {r['victims']} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
