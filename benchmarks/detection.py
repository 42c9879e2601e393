"""Cost of the client-side detectors (Wang & Li §3.2 D-SNR, §5 warm-up Z-score) relative to the training work
they stand in front of, on the cnn, a batch-norm ResNet-18 and torchvision's MobileNetV2 at width 0.5 (batch norm,
depthwise convolutions; :func:`fedleak.benchmarks.zoo_models.mobilenet_v2`) at 3x32x32 with 128 local samples.
With batch norm, D-SNR differentiates each sample's loss inside the batch forward pass
(:func:`fedleak.fl.per_sample.batch_sample_gradients`), which costs about one backward pass per sample.

``warmup_vs_own_steps``: seconds of the warm-up detector (5 SGD steps on 128 samples plus its statistics and
scoring) over the seconds of those 5 SGD steps alone. ``dsnr_vs_fwd_bwd``: seconds of the D-SNR check (per-sample
gradient norms of every conv/linear weight for 128 samples) over one forward+backward on the same 128 samples.
Each figure is the median of ``--repeats`` runs after a warm-up.

``dsnr_floor_vs_fwd_bwd`` (models with batch norm in training mode): ``samples`` times the seconds of one backward
pass of the batch's summed loss, over one forward+backward. It is the cost of the exact quantity with no overhead
at all: each sample's loss reaches every sample through the batch statistics, so each of the ``samples`` rows of
the Jacobian of the per-sample losses costs a whole-batch backward pass, however the passes are batched.

    python benchmarks/detection.py [--samples 128] [--resnet-width 64] [--repeats 3] [--only MODEL ...]
                                   [--device cuda] [--json]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from fedleak.benchmarks.zoo_models import mobilenet_v2
from fedleak.detection import WarmupZScore, dsnr_check
from fedleak.fl.per_sample import couples_samples
from fedleak.fl.training import batch_gradients, task_loss
from fedleak.models import build_model

INPUT_SHAPE = (3, 32, 32)
BUILDERS = {"mobilenet_v2": lambda shape, classes, **options: mobilenet_v2(shape[0], classes, **options)}


def _median_s(fn, repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _backward_s(model, x, y, repeats: int, device: torch.device) -> float:
    """Seconds of one backward pass of the batch's summed loss (the forward done once, outside the timing)."""
    model = copy.deepcopy(model).train()
    loss = task_loss(model, model(x), y)
    parameters = [p for p in model.parameters() if p.requires_grad]
    return _median_s(lambda: torch.autograd.grad(loss, parameters, retain_graph=True), repeats, device)


def _sgd_steps(model, x, y, steps: int, lr: float) -> None:
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        task_loss(model, model(x), y).backward()
        optimizer.step()


def bench(name: str, options: dict, samples: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    build = BUILDERS.get(name) or (lambda shape, classes, **kw: build_model(name, shape, classes, **kw))
    model = build(INPUT_SHAPE, 10, **options).to(device).train()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(samples, *INPUT_SHAPE, generator=generator), torch.randint(0, 10, (samples,), generator=generator)
    x, y = x.to(device), y.to(device)
    batches = [(x, y)]
    detector = WarmupZScore(steps=5, samples=samples)
    own = _median_s(lambda: _sgd_steps(model, x, y, detector.steps, detector.lr), repeats, device)
    warmup = _median_s(lambda: WarmupZScore(steps=5, samples=samples)(model, None, batches, device=device),
                       repeats, device)
    fwd_bwd = _median_s(lambda: batch_gradients(model, x, y), repeats, device)
    dsnr = _median_s(lambda: dsnr_check(model, None, batches, batch_size=samples, device=device), repeats, device)
    result = {"model": name, "options": options, "samples": samples, "own_steps_s": round(own, 3),
              "warmup_s": round(warmup, 3), "fwd_bwd_s": round(fwd_bwd, 4), "dsnr_s": round(dsnr, 3),
              "warmup_vs_own_steps": round(warmup / own, 2), "dsnr_vs_fwd_bwd": round(dsnr / fwd_bwd, 1)}
    if couples_samples(model):
        backward = _backward_s(model, x, y, repeats, device)
        result.update(backward_s=round(backward, 4), dsnr_floor_vs_fwd_bwd=round(samples * backward / fwd_bwd, 1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128, help="local samples (default 128, the paper's)")
    parser.add_argument("--resnet-width", type=int, default=64, help="ResNet-18 base width (default 64, full)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (default 3)")
    parser.add_argument("--only", nargs="+", choices=("cnn", "resnet18", "mobilenet_v2"), help="models to run")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cases = [("cnn", {}), ("resnet18", {"norm": "batch", "width": args.resnet_width}),
             ("mobilenet_v2", {"width_mult": 0.5})]
    cases = [case for case in cases if args.only is None or case[0] in args.only]
    results = [bench(name, options, args.samples, args.repeats, device) for name, options in cases]
    report = {"device": str(device), "torch_threads": torch.get_num_threads(), "input": list(INPUT_SHAPE), "samples": args.samples,
              "warmup_vs_own_steps": {r["model"]: r["warmup_vs_own_steps"] for r in results},
              "dsnr_vs_fwd_bwd": {r["model"]: r["dsnr_vs_fwd_bwd"] for r in results},
              "dsnr_floor_vs_fwd_bwd": {r["model"]: r["dsnr_floor_vs_fwd_bwd"] for r in results
                                        if "dsnr_floor_vs_fwd_bwd" in r}, "cases": results}
    if args.json:
        print(json.dumps(report))
        return 0
    for r in results:
        print(f"{r['model']} {r['options']}: warm-up {r['warmup_s']:.3f} s = {r['warmup_vs_own_steps']:.2f}x its 5 "
              f"SGD steps; D-SNR {r['dsnr_s']:.3f} s = {r['dsnr_vs_fwd_bwd']:.1f}x one forward+backward"
              + (f" (floor {r['dsnr_floor_vs_fwd_bwd']:.1f}x)" if "dsnr_floor_vs_fwd_bwd" in r else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
