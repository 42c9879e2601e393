"""The figures of analytic extraction: a batch above what was extracted from it (paper 002 Figs. 9-10), and a
defense study's best candidates per setting beside its recall curve (paper 002 §9)."""
from __future__ import annotations

from pathlib import Path

import torch

from fedleak.report.plots import image_grid

FIGURE_INPUTS = 10  # inputs shown per setting in a defense study's extractions.png


def extraction_figure(originals: torch.Tensor, extracted: torch.Tensor, recovered: torch.Tensor, path: Path,
                      *, count: int = 30, per_row: int = 10) -> Path:
    """Figures 9-10 of paper 002: the first ``count`` inputs of a batch below their extractions, grey where not
    extracted (``per_row`` images per row)."""
    count = min(count, len(originals))
    rows, missing = [], []
    for start in range(0, count, per_row):
        stop = min(start + per_row, count)
        rows += [extracted[start:stop], originals[start:stop]]
        missing += [~recovered[start:stop], None]
    return image_grid(rows, path, row_labels=["extracted", "original"] * (len(rows) // 2), missing=missing)


def best_candidate_grid(images, undefended, settings, labels: list[str], path: Path, *, near_psnr: float) -> Path:
    """Up to :data:`FIGURE_INPUTS` inputs whose best candidate under the ``undefended`` setting reaches ``near_psnr``
    dB (the first ones when none does), above their best candidate under each of ``settings`` (rows labelled
    ``labels``); ``images(setting)`` gives ``(inputs, best candidate of each, its PSNR)`` of run 0 under it."""
    originals, _, quality = images(undefended)
    candidates = [images(setting)[1] for setting in settings]
    chosen = (quality >= near_psnr).nonzero().squeeze(1)[:FIGURE_INPUTS]
    chosen = chosen if len(chosen) else torch.arange(min(FIGURE_INPUTS, len(originals)), device=originals.device)
    return image_grid([originals[chosen], *(c[chosen] for c in candidates)], path,
                      row_labels=["original", *labels])


def study_figures(curve: Path, images, undefended, settings, labels: list[str], *, setting: str, clean: str,
                  near_psnr: float, curve_note: str = "") -> str:
    """A defense study's ``extractions.png`` (:func:`best_candidate_grid` under each of ``settings``) beside its
    recall figure ``curve``, and the table's line naming both (``clean``: the gradient without the defense)."""
    grid = best_candidate_grid(images, undefended, settings, labels, curve.parent / "extractions.png",
                               near_psnr=near_psnr)
    return (f"figures: {curve}{curve_note}, {grid} (best candidate per {setting} of up to {FIGURE_INPUTS} inputs that "
            f"the {clean} gradient leaks, run 0)")
