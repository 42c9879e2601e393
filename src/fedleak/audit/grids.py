"""Reconstructions beside the originals: one PNG per audit cell for images, a table of sentences for text (each
true sequence beside its partner in the one-to-one pairing of :func:`fedleak.metrics.text.pairing`)."""
from __future__ import annotations

from pathlib import Path

from typing import Callable

import torch

from fedleak.metrics.text import pairing
from fedleak.report.plots import image_grid

GRID_IMAGES = 8
GRID_TEXTS = 8  # sentences per text grid


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


def text_grid(pairs: list[tuple[torch.Tensor, torch.Tensor]], decode: Callable[[list[int]], str]) -> list[dict]:
    """For each pair (true token ids (B, n), declared recovered ids (K, n)), each true sequence beside its recovered
    partner (:func:`fedleak.metrics.text.pairing`; ``None`` when it has none), decoded; at most :data:`GRID_TEXTS`
    rows: ``{"victim", "original", "recovered", "exact"}``. Unknown positions (-1) read as "?"."""
    rows = []
    for victim, (truth, recovered) in enumerate(pairs):
        truth, recovered = truth.detach().cpu().long(), recovered.detach().cpu().long()
        for index, partner in enumerate(pairing(recovered, truth)):
            guess = None if partner is None else recovered[partner]
            rows.append({"victim": victim, "original": decode(truth[index].tolist()),
                         "recovered": None if guess is None else _decoded(guess.tolist(), decode),
                         "exact": guess is not None and torch.equal(guess, truth[index])})
            if len(rows) == GRID_TEXTS:
                return rows
    return rows


def _decoded(ids: list[int], decode: Callable[[list[int]], str]) -> str:
    if min(ids, default=0) >= 0:
        return decode(ids)
    known = [i for i in ids if i >= 0]
    return decode(known) + " ?" * (len(ids) - len(known))
