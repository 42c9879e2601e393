"""DP-SGD client training speed (Abadi et al. 2016; paper 001 §3.4.2): fedleak's :class:`DPSGD` (per-sample
gradients from ``torch.func``, :mod:`fedleak.fl.per_sample`) side by side with Opacus's ``GradSampleModule``
(per-sample gradients from forward/backward hooks) at the same clipping threshold and noise multiplier, on the cnn
and a GroupNorm ResNet-18 at 3x32x32.

One step = the privatised gradient of one batch (per-sample gradients, clipping, noise) and an SGD update.
``samples_per_s`` is the batch size over the median step time after a warm-up. Both use the same clipping and
noise code (:func:`fedleak.defenses.privatize`), so the figure compares the per-sample-gradient engines.

    python benchmarks/dp.py [--batch 64] [--steps 5] [--resnet-width 64] [--json]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings

import torch
from opacus import GradSampleModule

from fedleak.defenses import dp_gradient_fn, privatize
from fedleak.fl.training import apply_gradients, sample_losses
from fedleak.models import build_model

INPUT_SHAPE = (3, 32, 32)
CLIP, SIGMA = 20.0, 1e-3


def opacus_gradient_fn(model: torch.nn.Module):
    """The DP-SGD gradient with Opacus's per-sample gradients (hooks on a GradSampleModule)."""
    hooked = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def gradient_fn(_model, x, y):
        hooked.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # full backward hooks on a first layer whose input needs no gradient
            warnings.simplefilter("ignore")
            sample_losses(model, hooked(x), y).sum().backward()
        per_sample = {n: p.grad_sample for n, p in params}
        noise = {n: torch.randn(p.shape) * SIGMA * CLIP for n, p in params}
        return privatize(per_sample, CLIP, noise)

    return gradient_fn


def _step_s(model, gradient_fn, x, y, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        grads = gradient_fn(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        apply_gradients(model, {n: g.detach() for n, g in grads.items()})
        optimizer.step()
        if step:  # the first step is a warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, options: dict, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name, INPUT_SHAPE, 10, **options).train()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(batch, *INPUT_SHAPE, generator=generator), torch.randint(0, 10, (batch,), generator=generator)
    fedleak_model = copy.deepcopy(model)
    fedleak_s = _step_s(fedleak_model, dp_gradient_fn(CLIP, SIGMA), x, y, steps)
    opacus_model = copy.deepcopy(model)
    opacus_s = _step_s(opacus_model, opacus_gradient_fn(opacus_model), x, y, steps)
    return {"model": name, "options": options, "batch": batch,
            "fedleak_samples_per_s": round(batch / fedleak_s, 1), "opacus_samples_per_s": round(batch / opacus_s, 1),
            "fedleak_vs_opacus": round(opacus_s / fedleak_s, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64, paper 001's)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per engine (default 5)")
    parser.add_argument("--resnet-width", type=int, default=64, help="ResNet-18 base width (default 64, full)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    cases = [("cnn", {}), ("resnet18", {"norm": "group", "width": args.resnet_width})]
    results = [bench(name, options, args.batch, args.steps) for name, options in cases]
    report = {"torch_threads": torch.get_num_threads(), "input": list(INPUT_SHAPE), "clip": CLIP, "sigma": SIGMA,
              "cases": results}
    if args.json:
        print(json.dumps(report))
        return 0
    for r in results:
        print(f"{r['model']} {r['options']}, batch {r['batch']}: fedleak {r['fedleak_samples_per_s']:.1f} samples/s, "
              f"Opacus GradSampleModule {r['opacus_samples_per_s']:.1f} samples/s ({r['fedleak_vs_opacus']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
