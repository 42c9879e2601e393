"""The metric maths of extraction against the true batch (Boenisch et al., paper 002, §8.1 Eq. 9-10): which
candidate is exact, each input's best candidate and its PSNR. Scores (A, P, R, the near-exact share) are computed
from these by the one scorer, :func:`fedleak.cases.scoring.score`.

The paper counts an extraction when its l2 error to an input is zero. Float arithmetic makes that "below a
tolerance": a candidate is *exact* when ``||x_hat - x_j||_2 <= tolerance * scale``, where ``x_j`` is the batch
input nearest to it and ``scale`` is the mean l2 norm of the batch inputs (the data's scale). The default
tolerance 1e-4 is far above float32 round-off of Eq. 5 (about 1e-7 measured) and far below the distance between two
different images. Distance alone does not separate a single input from an overlay in which one input dominates:
after training, an input the model already fits has a tiny ``dL/dy``, and the overlay of it with another input sits
within 1e-4 of the other (measured on digits with a trained FC-NN: relative l2 2.7e-5 and 6.3e-5). So when the true
batch is quantised (every value in [0, 1] on the grid ``k / levels``, 8-bit images by default), an exact candidate
must also lie on that grid within :data:`ON_GRID` of a level, the test the attacker applies without the truth
(:func:`fedleak.attacks.analytic.individual_rows`). Measured there: a single input's round-off is 1.5e-5 of a
level, the two overlays 1.4e-2 and 2.6e-2 (their other input moves a pixel by its weight times the difference).
An overlay whose other inputs move no pixel by more than :data:`ON_GRID` of a level is that input at the data's
precision and counts. For real-valued data only the distance applies. The true batch is used only here.

Exact recall alone calls a user safe too early: DP noise of sigma = 1e-6, or the float32 round-off of a FedAvg delta
of one small SGD step, moves every candidate off the tolerance while it still shows the image. Beside it, the
*near-exact* leakage (fedleak's extension, not the paper's): the share of batch inputs whose best candidate (the
nearest, l2) reaches ``near_psnr`` dB PSNR (default :data:`NEAR_PSNR` = 30 dB: visually the same image), named in
every output key (:func:`near_key`, e.g. ``near_recall_psnr30``), and the mean PSNR of the best candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULT_TOLERANCE = 1e-4
DEFAULT_LEVELS = 255  # 8-bit images in [0, 1]
ON_GRID = 1e-2  # of a quantisation level: the largest distance of an exact candidate's pixel to the grid
NEAR_PSNR = 30.0  # dB: near-exact leakage when the best candidate of an input reaches this PSNR
PSNR_CAP = 100.0  # dB: exact candidates (MSE 0) count this much in a mean; inputs without a candidate count 0 dB


def near_key(near_psnr: float = NEAR_PSNR) -> str:
    """The output key of the near-exact recall, naming its tolerance: ``near_recall_psnr30``."""
    return f"near_recall_psnr{near_psnr:g}"


def point_psnr(candidates: torch.Tensor, truth: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR ``10 log10(data_range^2 / MSE)`` in dB of each pair of points of any shape (N, ...), clamped to
    [0, :data:`PSNR_CAP`] (non-finite candidates give 0 dB)."""
    mse = (candidates.float() - truth.float()).pow(2).flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(data_range**2 / mse)
    return torch.nan_to_num(value, nan=0.0, posinf=PSNR_CAP, neginf=0.0).clamp(0.0, PSNR_CAP)


def best_candidates(candidates: torch.Tensor, truth: torch.Tensor, *, data_range: float = 1.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each true point (B, ...) its best candidate among ``candidates`` (K, ...): the nearest (l2), ignoring
    non-finite ones. Returns ``(index (B,), psnr (B,))``; with no finite candidate, index -1 and 0 dB."""
    inputs = truth.flatten(1).float()
    flat = candidates.to(truth.device).flatten(1).float()
    finite = torch.isfinite(flat).all(dim=1)
    if not finite.any():
        return (torch.full((len(truth),), -1, dtype=torch.long, device=truth.device),
                torch.zeros(len(truth), device=truth.device))
    kept = finite.nonzero().squeeze(1)
    index = kept[torch.cdist(inputs, flat[kept]).argmin(dim=1)]
    return index, point_psnr(flat[index], inputs, data_range)


def best_points(candidates: torch.Tensor, truth: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Each true point's best candidate itself (:func:`best_candidates`, or the given ``index``), zeros where there
    is no finite candidate: (B, ...) on the truth's device."""
    if index is None:
        index = best_candidates(candidates, truth)[0]
    if len(candidates) == 0:
        return torch.zeros_like(truth)
    chosen = candidates.to(truth.device)[index.clamp_min(0)]
    found = (index >= 0).view(-1, *[1] * (truth.dim() - 1))
    return torch.where(found, chosen, torch.zeros_like(chosen))


@dataclass
class ExtractionMatch:
    """For each of K candidates: the nearest batch input ``sample`` (K,), the relative ``error`` (K,) and
    whether it is ``exact`` (K,) bool."""

    sample: torch.Tensor
    error: torch.Tensor
    exact: torch.Tensor


def off_grid(points: torch.Tensor, levels: int) -> torch.Tensor:
    """Each point's (N, D) largest distance to the grid ``k / levels``, in levels (N,)."""
    grid = points * levels
    return (grid - grid.round()).abs().amax(dim=1)


def quantised(truth: torch.Tensor, levels: int | None) -> bool:
    """Whether every value of the flattened true batch (B, D) lies in [0, 1] on the grid ``k / levels``."""
    if levels is None or truth.numel() == 0 or truth.amin() < 0 or truth.amax() > 1:
        return False
    return bool((off_grid(truth, levels) <= ON_GRID).all())


def match_extractions(extracted: torch.Tensor, truth: torch.Tensor, *, tolerance: float = DEFAULT_TOLERANCE,
                      levels: int | None = DEFAULT_LEVELS, device=None) -> ExtractionMatch:
    """Match candidates (K, ...) to the true batch (B, ...) by l2 distance, all pairs at once; a candidate is exact
    within ``tolerance`` of the data scale and, when the batch is quantised to ``levels``, on that grid."""
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
    exact = error <= tolerance
    if quantised(inputs, levels) and len(safe):
        exact &= off_grid(safe, levels) <= ON_GRID
    return ExtractionMatch(sample, error, exact)
