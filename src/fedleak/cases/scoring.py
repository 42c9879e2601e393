"""How much an attack leaked, measured against the clients' true data (which only the scorer ever sees).

Every reconstruction is scored the same way, whatever the attack: the declared points (what the attacker claims
without ground truth) matched to the true points, exactly within :data:`fedleak.metrics.extraction.DEFAULT_TOLERANCE`
of the data scale (``leaked``: paper 002's exact extraction); for analytic readouts also A, P and R of paper 002
§8.1; for real-valued points the near-exact leakage (the share of true points whose best candidate reaches
:data:`fedleak.metrics.extraction.NEAR_PSNR` dB, under a key naming it, and the mean PSNR of the best candidates);
for images the quality of the best candidate of every true point (SSIM, PSNR, ASR of paper 001 §5.2).
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class PointScores:
    """Per true point (B,): ``recovered``, whether some candidate reproduces it exactly (paper 002 §8.1; declared or
    not); ``best``, the index of its best candidate (the nearest, l2; -1 where no candidate is finite); ``psnr``,
    that candidate's PSNR in dB (0 where there is none). ``exact``: the number of candidates that reproduce a true
    point exactly (each row counts, duplicates included: paper 002's G0)."""

    recovered: torch.Tensor
    best: torch.Tensor
    psnr: torch.Tensor
    exact: int

    def shown(self, inputs: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """Each true point's best candidate (B, ...), zeros where there is none: what a figure shows."""
        return best_points(inputs, truth, self.best)


def point_scores(reconstruction: Reconstruction, truth: torch.Tensor, *, tolerance: float = DEFAULT_TOLERANCE,
                 data_range: float = 1.0) -> PointScores:
    """:class:`PointScores` of the real-valued candidates of ``reconstruction`` (K, ...) against ``truth``
    (B, ...) of the same point shape."""
    inputs = reconstruction.inputs
    if not inputs.is_floating_point() or inputs.shape[1:] != truth.shape[1:]:
        raise ValueError(f"point scores compare real-valued points of one shape; got {tuple(inputs.shape[1:])} "
                         f"({inputs.dtype}) and {tuple(truth.shape[1:])}")
    truth = truth.to(inputs.device)
    recovered = torch.zeros(len(truth), dtype=torch.bool, device=inputs.device)
    exact = 0
    if len(inputs):
        match = match_extractions(inputs, truth, tolerance=tolerance)
        recovered[match.sample[match.exact]] = True
        exact = int(match.exact.sum())
    best, psnr = best_candidates(inputs, truth, data_range=data_range)
    return PointScores(recovered, best, psnr, exact)


def score(reconstruction: Reconstruction, truth: torch.Tensor, labels: torch.Tensor | None = None, *,
          paired: bool = False, tolerance: float = DEFAULT_TOLERANCE, near_psnr: float = NEAR_PSNR,
          data_range: float = 1.0) -> dict:
    """Scores of ``reconstruction`` against the true points ``truth`` (B, ...) and their ``labels``.

    ``paired``: point i reconstructs true point i (an inversion of B = 1 victims); otherwise every true point is
    compared with its nearest candidate (l2). Keys: ``points``, ``declared``, ``leaked``, ``leaked_indices``,
    ``recall`` (leaked / B); with ``info["num_rows"]`` (an analytic readout of N rows) also ``A``, ``P``, ``R``
    (paper 002 §8.1 Eq. 9-10): A the share of rows that give a candidate (the rows with a bias gradient above
    round-off, :func:`fedleak.attacks.analytic.active_rows`), P the share of rows whose candidate reproduces a true
    point exactly, R the share of true points some candidate reproduces exactly (declared or not); for token
    sequences a candidate reproduces a true sequence when every token is equal. For real-valued points of the
    truth's shape the near-exact leakage ``near_recall_psnr30`` (the key names ``near_psnr``: the share of true
    points whose best candidate, declared or not, reaches it) and ``best_psnr`` (their mean PSNR, 0 dB where no
    candidate exists); for images ``ssim``, ``psnr`` and ``asr``; ``label_accuracy`` when the attack recovers
    labels of paired points."""
    declared = reconstruction.declared_points()
    result: dict = {"points": len(reconstruction), "declared": len(declared), "true_points": len(truth)}
    leaked = leaked_indices(declared, truth, tolerance=tolerance)
    if leaked is not None:
        result.update(leaked=len(leaked), leaked_indices=leaked.tolist(), recall=len(leaked) / len(truth))
    inputs = reconstruction.inputs
    if inputs.shape[1:] != truth.shape[1:]:
        return result
    truth = truth.to(inputs.device)
    rows = reconstruction.info.get("num_rows")
    if not inputs.is_floating_point():
        if rows is not None:
            result.update(_token_rows(inputs, truth, rows))
        return result
    points = point_scores(reconstruction, truth, tolerance=tolerance, data_range=data_range)
    if rows is not None:
        result.update(A=len(inputs) / rows, P=points.exact / rows, R=int(points.recovered.sum()) / len(truth))
    if paired and len(inputs) == len(truth):
        best, closeness = inputs, point_psnr(inputs, truth, data_range)
    else:
        best, closeness = points.shown(inputs, truth), points.psnr
    near = int((closeness >= near_psnr).sum()) / max(len(truth), 1)  # a count over B, like R
    result.update({near_key(near_psnr): near, "best_psnr": float(closeness.mean())})
    if _images(inputs) and len(inputs):
        quality = ssim(best.clamp(0, data_range), truth, data_range)
        result.update(ssim=float(quality.mean()), psnr=float(psnr(best, truth, data_range).clamp_max(100).mean()),
                      asr=attack_success_rate(quality))
    if paired and labels is not None and reconstruction.labels is not None and len(labels) == len(reconstruction):
        result["label_accuracy"] = float((reconstruction.labels.to(labels.device) == labels).float().mean())
    return result


def _token_rows(tokens: torch.Tensor, truth: torch.Tensor, rows: int) -> dict:
    """A, P, R of token sequences read from ``rows`` rows: a candidate row is exact when it equals a true
    sequence in every position."""
    if len(tokens) == 0:
        return {"A": 0.0, "P": 0.0, "R": 0.0}
    equal = (tokens.unsqueeze(1) == truth.unsqueeze(0)).flatten(2).all(dim=2)  # (K, B)
    return {"A": len(tokens) / rows, "P": int(equal.any(dim=1).sum()) / rows,
            "R": int(equal.any(dim=0).sum()) / len(truth)}
