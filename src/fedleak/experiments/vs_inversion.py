"""Paper 002 §8.5: trap-weights extraction against gradient inversion (Inverting Gradients, Geiping et al.) on the
same images, one image per gradient (B = 1) as in the paper's Fig. 5-6: the pixel-wise mean squared error, PSNR,
SSIM, the near-exact share (>= 30 dB PSNR) and the time and backward passes each needs.

IG inverts the gradients of an honest FC-NN (the ``ig`` attack, ``iterations`` of it); trap weights
(s = ``scale_factor``) extract from the gradients of the same FC-NN with trap weights (Eq. 5, no iteration); both
read the same B = 1 client updates through :func:`fedleak.cases.batch.attack_batches`. The full
profile runs IG's full §5.2 schedule (up to 20,000 iterations; the paper reports 10^4), for ``--device cuda``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.cases.batch import attack_batches
from fedleak.data.training_images import load_training_images
from fedleak.metrics.extraction import near_key, point_psnr
from fedleak.metrics.image import mse, ssim
from fedleak.models import build_model
from fedleak.models.fcnn import WIDTHS
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown
from fedleak.report.plots import image_grid
from fedleak.study.extraction_cells import extraction_cell
from fedleak.study.paper_tables import P002_VS_INVERSION


@dataclass
class VsInversionConfig:
    """What ``fedleak reproduce vs-inversion`` runs: ``images`` victims, one gradient each."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    model_options: dict = field(default_factory=lambda: {"widths": WIDTHS})
    images: int = 16
    scale_factor: float = 0.9  # B = 1: with s = 0.7 (best for B = 100) some images activate no neuron at all
    iterations: int | None = None  # None: IG's full schedule
    seed: int = 0
    device: str = "cpu"
    profile: str = "full"

    @classmethod
    def quick(cls, **overrides) -> "VsInversionConfig":
        """8 images, IG for 1,000 iterations on a one-hidden-layer FC-NN of 1000 + 64 neurons."""
        base = dict(images=8, iterations=1000, model_options={"widths": (1000, 64)}, profile="quick")
        return cls(**{**base, **overrides})


def _quality(images: torch.Tensor, truth: torch.Tensor) -> dict:
    quality = point_psnr(images, truth)
    return {"mse": float(mse(images.clamp(0, 1), truth).mean()), "psnr": float(quality.mean()),
            "ssim": float(ssim(images.clamp(0, 1), truth).mean()), near_key(): float((quality >= 30).float().mean())}


def reproduce_vs_inversion(config: VsInversionConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Both attacks on the same images (each cell resumable); write ``table.txt``, ``comparison.md`` and
    ``reconstructions.png``."""
    results = ResultsDir(out, asdict(config))
    done = results.finished()
    data, data_name = load_training_images(config.dataset, config.root, None)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))[: config.images]
    x, y = (t.to(config.device) for t in data[index])
    torch.manual_seed(config.seed)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, **config.model_options)
    shown = {}
    if "trap_weights" not in done or "ig" not in done:
        bar = tqdm(total=2, desc="vs-inversion attacks", disable=not progress)
        start = time.perf_counter()
        victims = [(x[i:i + 1], y[i:i + 1]) for i in range(len(x))]  # one gradient per image, as for IG
        trap = extraction_cell(model, x, y, "trap_weights", scale_factor=config.scale_factor, seed=config.seed,
                               device=config.device)
        best = []
        for outcome in attack_batches(trap.attack, trap.sent, trap.secret, victims, reads=trap.reads(),
                                      device=config.device):
            candidates, truth = outcome.reconstruction.inputs, outcome.truth[0]
            chosen = outcome.points().best
            best.append(candidates[chosen.clamp_min(0)] if len(candidates) else torch.zeros_like(truth))
        shown["trap_weights"] = torch.cat(best).nan_to_num()
        seconds = time.perf_counter() - start
        done["trap_weights"] = results.add("trap_weights", {**_quality(shown["trap_weights"], x), "seconds": seconds,
                                                            "backward_passes": 0})
        bar.update()
        ig = ATTACKS.build("ig", iterations=config.iterations, seed=config.seed)
        sent, secret = ig.prepare(model, AttackContext(tuple(x.shape[1:]), seed=config.seed, device=config.device))
        inverted = [o.reconstruction for o in attack_batches(ig, sent, secret, victims, device=config.device)]
        shown["ig"] = torch.cat([r.inputs for r in inverted])
        iterations = torch.cat([r.meta["iterations"] for r in inverted])
        done["ig"] = results.add("ig", {**_quality(shown["ig"], x), "seconds": inverted[0].info["seconds"],
                                        "backward_passes": float(iterations.float().mean())})
        bar.update()
        bar.close()
    near = near_key()
    lines = [f"Boenisch et al. (paper 002) §8.5: trap weights vs gradient inversion (IG), B = 1, {config.images} "
             f"images of {data_name}, FC-NN {config.model_options} ({config.profile} profile)", "",
             f"{'attack':12s} {'MSE':>9s} {'PSNR':>6s} {'SSIM':>5s} {near:>18s} {'seconds':>8s} {'iterations':>10s}"]
    for name in ("trap_weights", "ig"):
        c = done[name]
        lines.append(f"{name:12s} {c['mse']:9.2e} {c['psnr']:6.1f} {c['ssim']:5.3f} {c[near]:18.3f} "
                     f"{c['seconds']:8.2f} {c['backward_passes']:10.0f}")
    if shown:
        figure = image_grid([x.cpu(), shown["trap_weights"].cpu(), shown["ig"].detach().cpu()],
                            results.path / "reconstructions.png", row_labels=["original", "trap weights", "IG"])
        lines.append(f"\nfigure: {figure}")
    text = "\n".join(lines) + "\n"
    comparison = Comparison("§8.5: trap weights vs gradient inversion (B = 1)",
                            ["attack", "MSE (ours)", "iterations (ours)", "seconds (ours)", "paper"],
                            [["trap weights", f"{done['trap_weights']['mse']:.2e}", 0,
                              f"{done['trap_weights']['seconds']:.3f}", P002_VS_INVERSION["trap_weights"]],
                             ["IG", f"{done['ig']['mse']:.2e}", f"{done['ig']['backward_passes']:.0f}",
                              f"{done['ig']['seconds']:.1f}", P002_VS_INVERSION["ig"]]],
                            [f"ours: {data_name}, FC-NN {config.model_options}, IG "
                             f"{config.iterations or 'full schedule'} iterations, device {config.device}"])
    results.write_text("table.txt", text)
    results.write_csv("table.csv", [{"attack": k, **{m: v for m, v in done[k].items() if m != "key"}}
                                    for k in ("trap_weights", "ig")])
    results.write_text("comparison.md", comparison_markdown("Paper 002 §8.5: ours beside the paper", [comparison]))
    return {"text": text, "cells": {k: done[k] for k in ("trap_weights", "ig")}}
