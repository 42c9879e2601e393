"""Reconstructions beside the originals, as one PNG per audit cell."""
from __future__ import annotations

from pathlib import Path

import torch

from fedleak.report.plots import image_grid

GRID_IMAGES = 8


def save_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], path: Path, *, paired: bool,
              labels: tuple[str, str] = ("client data", "reconstruction")) -> bool:
    """Each pair's true images (top) above the reconstructed point closest to each, or the point of the same
    index when ``paired`` (bottom); ``False`` (nothing drawn) unless both are images of one shape."""
    truths, shown = [], []
    for truth, inputs in pairs:
        inputs = inputs.detach().to(truth.device)
        if truth.dim() != 4 or not inputs.is_floating_point() or inputs.shape[1:] != truth.shape[1:] or not len(inputs):
            return False
        if not (paired and len(inputs) == len(truth)):
            finite = torch.isfinite(inputs.flatten(1)).all(dim=1)
            inputs = torch.where(finite.view(-1, 1, 1, 1), inputs, torch.zeros_like(inputs))
            inputs = inputs[torch.cdist(truth.flatten(1).float(), inputs.flatten(1).float()).argmin(dim=1)]
        truths.append(truth)
        shown.append(inputs)
    truth, shown = torch.cat(truths)[:GRID_IMAGES], torch.cat(shown)[:GRID_IMAGES]
    low, high = float(truth.min()), float(truth.max())
    scale = (high - low) or 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid([(truth - low) / scale, (shown - low) / scale], path, row_labels=list(labels))
    return True
