"""Gradient distance functions (the GDF of Algorithm 1, paper 001 §3.3), one value per attacked victim.

Every gradient is a dict ``name -> (V, *shape)`` with one row per victim (or its :class:`RankOne` or
:class:`LowRank` factors, as the per-layer engine leaves the weights applied at one or a few positions per
sample); a distance reduces every dimension but the first and returns a ``(V,)`` tensor, so independent victims
share one batched optimisation. A registered
distance is prepared once per attack with the target: ``DISTANCES.get(name)(target, names)(dummy)``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from fedleak.fl.factored import FACTORED, LowRank, RankOne, materialised
from fedleak.registry import Registry

Gradients = Mapping[str, torch.Tensor]
Distance = Callable[[Gradients], torch.Tensor]
# name -> (target, names) -> distance of dummy gradients to that target: what depends on the target alone (its
# rows, its norms) is computed once per attack, not once per iteration.
PreparedDistance = Callable[[Gradients, Sequence[str]], Distance]

DISTANCES: Registry[PreparedDistance] = Registry("gradient distance")
_EPS = 1e-12
_SMALL = 4096  # values per victim of a layer the cosine distance reduces with the other small ones


def _rowwise(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


class _DotAndSquare(torch.autograd.Function):
    """``(<d_i, r_i>, |d_i|^2)`` per row of ``d`` and a constant ``r``: forward a dot product and a norm (which
    needs no temporary), backward the gradient ``a r + 2 b d`` as one product and one fused multiply-add
    (autograd's own for ``(d * r).sum(1)`` and ``d.pow(2).sum(1)`` takes several more passes over ``d``, which
    dominate the distance when the per-victim gradients are large). Differentiable twice, like that expression."""

    @staticmethod
    def forward(ctx, d: torch.Tensor, r: torch.Tensor):
        ctx.save_for_backward(d, r)
        return torch.linalg.vecdot(d, r), torch.linalg.vector_norm(d, dim=1).square()

    @staticmethod
    def backward(ctx, grad_dot: torch.Tensor, grad_square: torch.Tensor):
        d, r = ctx.saved_tensors
        return torch.addcmul(r * grad_dot.unsqueeze(1), d, 2 * grad_square.unsqueeze(1)), None


def _dot_and_square(dummy: torch.Tensor | RankOne | LowRank, rows: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per victim, the dot product of the dummy gradient with the target's rows and its own squared norm (from
    the factors of a :class:`RankOne` or :class:`LowRank` gradient, without multiplying them out)."""
    if isinstance(dummy, FACTORED):
        return dummy.dot_and_square(rows)
    return _DotAndSquare.apply(_rowwise(dummy), rows)


@DISTANCES.register("l2")
def l2_distance(target: Gradients, names: Sequence[str]) -> Distance:
    """Squared Euclidean distance summed over layers (DLG, Zhu et al. 2019). Factored gradients are
    multiplied out: expanding the square would cancel ``|T|^2`` against ``2 <G, T>`` near the optimum."""
    rows = {n: _rowwise(target[n]) for n in names}

    def distance(dummy: Gradients) -> torch.Tensor:
        dummy = materialised({n: dummy[n] for n in names})
        return sum((_rowwise(dummy[n]) - rows[n]).pow(2).sum(1) for n in names)

    return distance


@DISTANCES.register("cosine")
def cosine_distance(target: Gradients, names: Sequence[str]) -> Distance:
    """``1 - <G', G> / (|G'| |G|)`` over all layers concatenated (Inverting Gradients, Geiping et al. 2020). The
    layers with few values per victim (biases, small weights) are concatenated and reduced as one: each costs a
    few ops forward and backward, more than its values at a few victims (the cnn's four biases and first weight:
    one reduction instead of five); the sums are added in another order (float rounding)."""
    rows = {n: _rowwise(target[n]) for n in names}
    target_norm = sum(rows[n].pow(2).sum(1) for n in names).add(_EPS).sqrt()
    small = {n for n in names if rows[n].shape[1] <= _SMALL}
    grouped_rows: dict[tuple[str, ...], torch.Tensor] = {}  # the target's rows of each group, concatenated once

    def distance(dummy: Gradients) -> torch.Tensor:
        group = tuple(n for n in names if n in small and not isinstance(dummy[n], FACTORED))
        group = group if len(group) > 1 else ()
        terms = [_dot_and_square(dummy[n], rows[n]) for n in names if n not in group]
        if group:
            if group not in grouped_rows:
                grouped_rows[group] = torch.cat([rows[n] for n in group], 1)
            terms.append(_DotAndSquare.apply(torch.cat([_rowwise(dummy[n]) for n in group], 1), grouped_rows[group]))
        dot, dummy_sq = (torch.stack(t).sum(0) if len(t) > 1 else t[0] for t in zip(*terms))
        return 1 - dot / (dummy_sq.add(_EPS).sqrt() * target_norm)

    return distance


@DISTANCES.register("layer_cosine")
def layer_cosine_distance(target: Gradients, names: Sequence[str]) -> Distance:
    """Mean over layers of each layer's cosine distance ``1 - cos(G'_l, G_l)``."""
    rows = {n: _rowwise(target[n]) for n in names}
    norms = {n: t.pow(2).sum(1).add(_EPS).sqrt() for n, t in rows.items()}

    def distance(dummy: Gradients) -> torch.Tensor:
        total = 0
        for n in names:
            dot, square = _dot_and_square(dummy[n], rows[n])
            cos = dot / (square.add(_EPS).sqrt() * norms[n])
            total = total + (1 - cos)
        return total / len(names)

    return distance
