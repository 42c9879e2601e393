"""Extraction success against the true batch: active neurons A, extraction-precision P and extraction-recall R
(Boenisch et al., paper 002, §8.1 Eq. 9-10, and §8.3 for A).

The paper counts an extraction when its l2 error to an input is zero. Float arithmetic makes that "below a
tolerance": a candidate is *exact* when ``||x_hat - x_j||_2 <= tolerance * scale``, where ``x_j`` is the batch
input nearest to it and ``scale`` is the mean l2 norm of the batch inputs (the data's scale). The default
tolerance 1e-4 is far above float32 round-off of Eq. 5 (about 1e-6) and far below the distance between two
different images, so it separates single-input rows from overlays. The true batch is used only here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExtractionMatch:
    """For each of K candidates: the nearest batch input ``sample`` (K,), the relative ``error`` (K,) and
    whether it is ``exact`` (K,) bool."""

    sample: torch.Tensor
    error: torch.Tensor
    exact: torch.Tensor


@dataclass
class ExtractionScores:
    """Paper 002 §8.1 metrics for one gradient: ``active`` A (share of neurons with a non-zero bias gradient,
    i.e. activated by at least one input), ``precision`` P = G0 / N, ``recall`` R = B0 / B; ``recovered`` (B,)
    bool marks the inputs extracted exactly and ``best`` (B,) the candidate index closest to each input."""

    active: float
    precision: float
    recall: float
    recovered: torch.Tensor
    best: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {"A": self.active, "P": self.precision, "R": self.recall}


def match_extractions(extracted: torch.Tensor, truth: torch.Tensor, *, tolerance: float = DEFAULT_TOLERANCE,
                      device=None) -> ExtractionMatch:
    """Match candidates (K, ...) to the true batch (B, ...) by l2 distance, all pairs at once."""
    device = device if device is not None else truth.device
    candidates = extracted.to(device).flatten(1).float()
    inputs = truth.to(device).flatten(1).float()
    if len(inputs) == 0:
        raise ValueError("the true batch is empty")
    if candidates.shape[1] != inputs.shape[1]:
        raise ValueError(f"candidates have {candidates.shape[1]} features but the batch inputs have {inputs.shape[1]}")
    scale = inputs.norm(dim=1).mean().clamp_min(torch.finfo(inputs.dtype).tiny)
    finite = torch.isfinite(candidates).all(dim=1)
    safe = torch.where(finite.unsqueeze(1), candidates, torch.zeros_like(candidates))
    sample = torch.cdist(safe, inputs).argmin(dim=1) if len(safe) else torch.zeros(0, dtype=torch.long, device=device)
    # the matrix-product distances of cdist pick the neighbour; the error is recomputed directly for precision
    error = (safe - inputs[sample]).norm(dim=1) / scale
    error = torch.where(finite, error, torch.full_like(error, float("inf")))
    return ExtractionMatch(sample, error, error <= tolerance)


def extraction_scores(extracted: torch.Tensor, bias_grad: torch.Tensor, truth: torch.Tensor, *,
                      tolerance: float = DEFAULT_TOLERANCE, device=None) -> ExtractionScores:
    """A, P and R of the candidates ``extracted`` (K, ...) from a layer whose bias gradient is ``bias_grad`` (N,)
    against the true batch ``truth`` (B, ...)."""
    device = device if device is not None else truth.device
    match = match_extractions(extracted, truth, tolerance=tolerance, device=device)
    batch = len(truth)
    recovered = torch.zeros(batch, dtype=torch.bool, device=device)
    recovered[match.sample[match.exact]] = True
    error = torch.full((batch, max(len(match.error), 1)), float("inf"), device=device)
    if len(match.error):
        error[match.sample, torch.arange(len(match.error), device=device)] = match.error
    num_rows = bias_grad.numel()
    return ExtractionScores(
        active=float((bias_grad != 0).float().mean()),
        precision=float(match.exact.sum()) / num_rows,
        recall=float(recovered.float().mean()),
        recovered=recovered,
        best=error.argmin(dim=1),
    )
