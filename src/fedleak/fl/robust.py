"""Opt-in robust aggregation for ``fl.Server``: norm clipping and the coordinate-wise trimmed mean, the same two
rules a Flower server of fedleak's app can switch on (``FedTrimmedAvg``, which Flower ships, for the trimmed mean;
:func:`clip_tensors` inside fedleak's checked strategies for clipping, because Flower's
``DifferentialPrivacyServerSideFixedClipping`` skips the aggregation of any round with a failed reply, which a
dropped hostile reply is; see :mod:`fedleak.flower.reply_check`).

- Norm clipping (Sun et al. 2019, "Can you really backdoor federated learning?", §3 norm thresholding; the
  clipping step of McMahan et al. 2018, DP-FedAvg Alg. 1): each update is scaled to L2 norm at most ``clip_norm``
  before averaging, which bounds what any one client can move the global model.
- Trimmed mean (Yin et al. 2018, arXiv 1803.01498, Def. 2): per coordinate, the ``trim_fraction`` largest and
  smallest values across clients are cut and the rest averaged (unweighted, as in Flower's ``FedTrimmedAvg``).

Both are off by default (plain FedAvg/FedSGD weighted mean): they change what honest clients contribute too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from fedleak.checks import check_number
from fedleak.fl.client import ClientUpdate


@dataclass(frozen=True)
class RobustAggregation:
    """``clip_norm``: scale each update to at most this L2 norm (``None``: no clipping); ``trim_fraction``: cut
    this fraction of the clients at each end of every coordinate, in [0, 0.5) (0: the weighted mean)."""

    clip_norm: float | None = None
    trim_fraction: float = 0.0

    def __post_init__(self):
        if self.clip_norm is not None:
            check_number("clip_norm", self.clip_norm, low=0, low_open=True)
        check_number("trim_fraction", self.trim_fraction, low=0, high=0.5, high_open=True)

    def mean(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        """The round's aggregate of ``updates`` under this rule."""
        from fedleak.fl.server import weighted_mean

        if self.clip_norm is not None:
            updates = [clip_update(u, self.clip_norm) for u in updates]
        if self.trim_fraction > 0:
            return trimmed_mean(updates, self.trim_fraction)
        return weighted_mean(updates)


def clip_tensors(tensors: Mapping[str, torch.Tensor], clip_norm: float) -> dict[str, torch.Tensor]:
    """Every floating-point tensor scaled by ``min(1, clip_norm / ||tensors||)`` (one L2 norm over all of them)."""
    floating = [t.double().norm() for t in tensors.values() if t.is_floating_point()]
    if not floating:
        return dict(tensors)
    norm = torch.stack(floating).norm()
    factor = (clip_norm / norm.clamp_min(torch.finfo(torch.float64).tiny)).clamp(max=1.0)
    return {k: t * factor.to(t.device, t.dtype) if t.is_floating_point() else t for k, t in tensors.items()}


def clip_update(update: ClientUpdate, clip_norm: float) -> ClientUpdate:
    """``update`` with its tensors clipped to L2 norm ``clip_norm`` (:func:`clip_tensors`)."""
    return ClientUpdate(update.client_id, update.round, update.kind, clip_tensors(update.tensors, clip_norm),
                        update.num_examples, update.metrics)


def trimmed_mean(updates: Sequence[ClientUpdate], trim_fraction: float) -> dict[str, torch.Tensor]:
    """The coordinate-wise trimmed mean of the updates' tensors: ``int(trim_fraction * n)`` values cut at each
    end (Yin et al. 2018, Def. 2; Flower's ``trim_mean``)."""
    count = len(updates)
    cut = int(trim_fraction * count)
    result = {}
    for key in updates[0].tensors:
        stacked = torch.stack([u.tensors[key] for u in updates])
        kept = stacked.sort(dim=0).values[cut:count - cut]
        result[key] = kept.mean(dim=0)
    return result
