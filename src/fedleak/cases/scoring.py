"""How much an attack leaked, measured against the clients' true data (which only the scorer ever sees).

Every reconstruction is scored the same way, whatever the attack: the declared points (what the attacker claims
without ground truth) matched to the true points, exactly within :data:`fedleak.metrics.extraction.DEFAULT_TOLERANCE`
of the data scale (``leaked``: paper 002's exact extraction); for analytic readouts also A, P and R of paper 002
§8.1; for real-valued points the near-exact leakage (the share of true points whose best candidate reaches
:data:`fedleak.metrics.extraction.NEAR_PSNR` dB, under a key naming it, and the mean PSNR of the best candidates);
for images the quality of the best candidate of every true point (SSIM, PSNR, ASR of paper 001 §5.2).
"""
from __future__ import annotations

import torch

from fedleak.attacks.base import Reconstruction
from fedleak.metrics.extraction import (DEFAULT_TOLERANCE, NEAR_PSNR, best_candidates, best_points, match_extractions,
                                        near_key, point_psnr)
from fedleak.metrics.image import WINDOW, attack_success_rate, psnr, ssim


def leaked_indices(declared: torch.Tensor, truth: torch.Tensor, *, tolerance: float = DEFAULT_TOLERANCE
                   ) -> torch.Tensor | None:
    """Indices of the true points that some declared point reproduces: within ``tolerance`` of the data scale for
    real-valued points, exactly for token sequences; ``None`` when the two cannot be compared (other shapes)."""
    if declared.shape[1:] != truth.shape[1:]:
        return None
    if len(declared) == 0:
        return torch.zeros(0, dtype=torch.long)
    if declared.is_floating_point():
        match = match_extractions(declared, truth, tolerance=tolerance)
        return torch.unique(match.sample[match.exact]).cpu()
    equal = (declared.unsqueeze(1) == truth.to(declared.device).unsqueeze(0)).flatten(2).all(dim=2)
    return torch.unique(equal.nonzero()[:, 1]).cpu()


def _images(points: torch.Tensor) -> bool:
    return points.is_floating_point() and points.dim() == 4 and min(points.shape[-2:]) >= WINDOW


def score(reconstruction: Reconstruction, truth: torch.Tensor, labels: torch.Tensor | None = None, *,
          paired: bool = False, tolerance: float = DEFAULT_TOLERANCE, near_psnr: float = NEAR_PSNR,
          data_range: float = 1.0) -> dict:
    """Scores of ``reconstruction`` against the true points ``truth`` (B, ...) and their ``labels``.

    ``paired``: point i reconstructs true point i (an inversion of B = 1 victims); otherwise every true point is
    compared with its nearest candidate (l2). Keys: ``points``, ``declared``, ``leaked``, ``leaked_indices``,
    ``recall`` (leaked / B); with ``info["num_rows"]`` also ``A``, ``P``, ``R`` (paper 002 Eq. 9-10: R counts
    every candidate, declared or not); for real-valued points of the truth's shape the near-exact leakage
    ``near_recall_psnr30`` (the key names ``near_psnr``: the share of true points whose best candidate, declared or
    not, reaches it) and ``best_psnr`` (their mean PSNR, 0 dB where no candidate exists); for images ``ssim``,
    ``psnr`` and ``asr``; ``label_accuracy`` when the attack recovers labels of paired points."""
    declared = reconstruction.declared_points()
    result: dict = {"points": len(reconstruction), "declared": len(declared), "true_points": len(truth)}
    leaked = leaked_indices(declared, truth, tolerance=tolerance)
    if leaked is not None:
        result.update(leaked=len(leaked), leaked_indices=leaked.tolist(), recall=len(leaked) / len(truth))
    inputs = reconstruction.inputs
    if not inputs.is_floating_point() or inputs.shape[1:] != truth.shape[1:]:
        return result
    truth = truth.to(inputs.device)
    if "num_rows" in reconstruction.info:
        rows = reconstruction.info["num_rows"]
        match = match_extractions(inputs, truth, tolerance=tolerance) if len(inputs) else None
        exact = 0 if match is None else int(match.exact.sum())
        recovered = 0 if match is None else len(torch.unique(match.sample[match.exact]))
        result.update(A=len(inputs) / rows, P=exact / rows, R=recovered / len(truth))
    if paired and len(inputs) == len(truth):
        best, closeness = inputs, point_psnr(inputs, truth, data_range)
    else:
        index, closeness = best_candidates(inputs, truth, data_range=data_range)
        best = best_points(inputs, truth, index)
    result.update({near_key(near_psnr): float((closeness >= near_psnr).float().mean()),
                   "best_psnr": float(closeness.mean())})
    if _images(inputs) and len(inputs):
        quality = ssim(best.clamp(0, data_range), truth, data_range)
        result.update(ssim=float(quality.mean()), psnr=float(psnr(best, truth, data_range).clamp_max(100).mean()),
                      asr=attack_success_rate(quality))
    if paired and labels is not None and reconstruction.labels is not None and len(labels) == len(reconstruction):
        result["label_accuracy"] = float((reconstruction.labels.to(labels.device) == labels).float().mean())
    return result
