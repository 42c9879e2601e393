"""Gradient distance functions (the GDF of Algorithm 1, paper 001 §3.3), one value per attacked victim.

Every gradient is a dict ``name -> (V, *shape)`` with one row per victim; a distance reduces every dimension
but the first and returns a ``(V,)`` tensor, so independent victims share one batched optimisation.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from fedleak.registry import Registry

Gradients = Mapping[str, torch.Tensor]
Distance = Callable[[Gradients, Gradients, Sequence[str]], torch.Tensor]

DISTANCES: Registry[Distance] = Registry("gradient distance")
_EPS = 1e-12


def _rowwise(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


@DISTANCES.register("l2")
def l2_distance(dummy: Gradients, target: Gradients, names: Sequence[str]) -> torch.Tensor:
    """Squared Euclidean distance summed over layers (DLG, Zhu et al. 2019)."""
    return sum(_rowwise(dummy[n] - target[n]).pow(2).sum(1) for n in names)


@DISTANCES.register("cosine")
def cosine_distance(dummy: Gradients, target: Gradients, names: Sequence[str]) -> torch.Tensor:
    """``1 - <G', G> / (|G'| |G|)`` over all layers concatenated (Inverting Gradients, Geiping et al. 2020)."""
    dot = sum((_rowwise(dummy[n]) * _rowwise(target[n])).sum(1) for n in names)
    dummy_sq = sum(_rowwise(dummy[n]).pow(2).sum(1) for n in names)
    target_sq = sum(_rowwise(target[n]).pow(2).sum(1) for n in names)
    return 1 - dot / (dummy_sq.add(_EPS).sqrt() * target_sq.add(_EPS).sqrt())


@DISTANCES.register("layer_cosine")
def layer_cosine_distance(dummy: Gradients, target: Gradients, names: Sequence[str]) -> torch.Tensor:
    """Mean over layers of each layer's cosine distance ``1 - cos(G'_l, G_l)``."""
    total = 0
    for n in names:
        d, t = _rowwise(dummy[n]), _rowwise(target[n])
        cos = (d * t).sum(1) / (d.pow(2).sum(1).add(_EPS).sqrt() * t.pow(2).sum(1).add(_EPS).sqrt())
        total = total + (1 - cos)
    return total / len(names)
