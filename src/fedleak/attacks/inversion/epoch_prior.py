"""The epoch order-invariant prior of FedAvg inversion (Dimitrov et al., "Data Leakage in Federated Averaging",
TMLR 2022, §4.2): the client sees the same N samples in each of its E local epochs, in an unknown order. The
attack keeps one reconstruction per epoch (each epoch's simulated mini-batches use that epoch's copies, so no
order needs guessing) and pulls the epochs' reconstructions of the same data set together by a distance that
does not depend on their order: each later epoch's samples are matched to the first epoch's by an optimal
assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``, on the pairwise L2 distances of samples of the
same label, computed without gradient), and the penalty is the mean squared distance of the matched copies to
their mean. The reconstruction is the mean of the matched copies.

Two modes (:data:`EPOCH_PRIORS`): ``"shared"`` (one dummy image per sample serving every epoch, the prior as a
hard constraint, later epochs' orders averaged) and ``"matched"`` (the paper's soft prior, this module).
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

EPOCH_PRIORS = ("shared", "matched")
_OTHER_LABEL = 1e6  # a matching cost that keeps samples of different labels apart


def check_epoch_prior(mode: str, weight: float) -> None:
    """One-line errors for an unknown mode or a negative weight."""
    if mode not in EPOCH_PRIORS:
        raise ValueError(f"fedavg_inversion epoch_prior must be one of {EPOCH_PRIORS}, got {mode!r}")
    if not weight >= 0:
        raise ValueError(f"fedavg_inversion epoch_weight must be >= 0, got {weight}")


def epoch_schedule(samples: int, epochs: int, batch_size: int) -> list[list[torch.Tensor]]:
    """One run of the client's local training on per-epoch copies laid out ``(E * N)``: epoch ``e``'s mini-batches
    index copy ``e`` of the samples in its own (free) order."""
    return [[batch for e in range(epochs) for batch in torch.arange(e * samples, (e + 1) * samples).split(batch_size)]]


@torch.no_grad()
def match_epochs(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``x (L, E, N, ...)``, ``labels (L, N)`` (every epoch's copies carry the same labels) -> ``order (L, E, N)``:
    ``x[l, e, order[l, e, j]]`` is epoch ``e``'s copy matched to epoch 0's sample ``j`` (minimum total L2 distance,
    same labels only); epoch 0's order is the identity. One CPU assignment per lane and later epoch."""
    lanes, epochs, samples = x.shape[:3]
    flat = x.flatten(3)
    cost = torch.cdist(flat[:, 1:], flat[:, :1].expand(-1, epochs - 1, -1, -1))  # (L, E-1, N copies, N anchors)
    other = (labels.unsqueeze(2) != labels.unsqueeze(1)).unsqueeze(1)
    cost = (cost + _OTHER_LABEL * other).cpu().numpy()
    order = torch.arange(samples).repeat(lanes, epochs, 1)
    for lane in range(lanes):
        for epoch in range(epochs - 1):
            rows, cols = linear_sum_assignment(cost[lane, epoch])
            order[lane, epoch + 1, torch.as_tensor(cols)] = torch.as_tensor(rows)
    return order.to(x.device)


def aligned(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x (L, E, N, ...)`` with each epoch's copies put in the order of epoch 0's samples."""
    index = order.view(*order.shape, *([1] * (x.dim() - 3))).expand_as(x)
    return x.gather(2, index)


def matched_prior(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per lane ``(L,)``: the mean squared distance (per pixel) of the epochs' matched copies to their mean, the
    permutation-invariant distance of §4.2; differentiable in ``x``, the matching fixed."""
    copies = aligned(x, match_epochs(x, labels))
    return (copies - copies.mean(1, keepdim=True)).pow(2).flatten(1).mean(1)


def matched_mean(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``x (L, E, N, ...)`` -> ``(L, N, ...)``: the mean of each sample's matched copies (the reconstruction)."""
    return aligned(x, match_epochs(x, labels)).mean(1)
