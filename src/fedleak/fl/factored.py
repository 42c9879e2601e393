"""Per-sample weight gradients as outer products, and the factored forms the gradient inversion's distances use
without multiplying them out.

A weight's per-sample gradient is ``G_i = sum_p g_ip a_ip^T`` over the positions ``p`` where the layer applies it
(:mod:`fedleak.fl.layerwise_gradients`): ``g`` the gradient at the layer's output, ``a`` its input (patches of
it for a convolution). :func:`outer_sum` multiplies that out; :class:`RankOne` (one position) and
:class:`LowRank` (a few, :func:`factor_at`) keep the factors and give a distance what it needs of ``G``, its dot
product with a target and its squared norm. Everything is differentiable in ``g`` and ``a``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch


class _Outer(torch.autograd.Function):
    """``g_i a_i^T`` per sample, ``(B, O), (B, I) -> (B, O, I)``: forward a broadcast product (a batched matrix
    product with inner size 1 is several times slower on CPU), backward a row-wise dot product and a
    row-vector-times-matrix product (measured on one CPU thread at B = 16, O = 64, I = 800: 0.45 and 0.15 ms,
    against 1.2 and 1.7 ms for the matrix-times-column-vector products autograd would use). Differentiable twice."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(g, a)
        return g.unsqueeze(2) * a.unsqueeze(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g, a = ctx.saved_tensors
        return torch.linalg.vecdot(grad, a.unsqueeze(1)), torch.bmm(g.unsqueeze(1), grad).squeeze(1)


class _Bilinear(torch.autograd.Function):
    """``g_i^T T_i a_i`` per sample, ``(B, O), (B, I), (B, O, I) -> (B,)``, differentiable once in ``g`` and ``a``
    (``T`` is a constant): one pass over ``T`` forward (``T_i a_i``, kept for the backward) and one backward
    (``g_i^T T_i``), where the materialised ``g_i a_i^T`` costs a write and several passes over ``B O I`` values."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ta = torch.bmm(a.unsqueeze(1), t.transpose(1, 2)).squeeze(1)  # 4x faster than vecdot or bmm(t, a)
        ctx.save_for_backward(g, ta, t)
        return torch.linalg.vecdot(g, ta)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        g, ta, t = ctx.saved_tensors
        grad = grad.unsqueeze(1)
        grad_a = torch.bmm(g.unsqueeze(1), t).squeeze(1) * grad if ctx.needs_input_grad[1] else None
        return ta * grad if ctx.needs_input_grad[0] else None, grad_a, None


@dataclass(frozen=True)
class RankOne:
    """The per-sample gradients ``G_i = g_i a_i^T`` of a weight applied once per sample (a ``Linear`` on flat
    inputs, a convolution with one output position), left as its factors ``g`` ``(B, O)`` and ``a`` ``(B, I)``:
    what a distance needs of them, ``<G_i, T_i>`` and ``|G_i|^2 = |g_i|^2 |a_i|^2``, costs no ``B O I`` product
    (the factorisation behind "ghost" norms, Goodfellow 2015; Li et al. 2022). ``shape``: the parameter's."""

    g: torch.Tensor
    a: torch.Tensor
    shape: torch.Size

    def materialise(self) -> torch.Tensor:
        """``(B, *shape)``: the per-sample gradients themselves."""
        return _Outer.apply(self.g, self.a).view(len(self.g), *self.shape)

    def dot_and_square(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(<G_i, T_i>, |G_i|^2)`` per sample for a constant target ``rows`` ``(B, O * I)``."""
        dot = _Bilinear.apply(self.g, self.a, rows.view(len(rows), *self.g.shape[1:], -1))
        return dot, self.g.square().sum(1) * self.a.square().sum(1)


@dataclass(frozen=True)
class LowRank:
    """The per-sample gradients ``G_i = sum_p g_ip a_ip^T`` of a weight applied at a few positions ``P`` per
    sample (a deep convolution's output positions, a linear layer's tokens), left as their factors ``g``
    ``(B, O, P)`` and ``a`` ``(B, I, P)``: ``<G_i, T_i> = sum(g_i * T_i a_i)`` and ``|G_i|^2 = sum((g_i^T g_i) *
    (a_i^T a_i))`` (the Gram form of "ghost" norms, Li et al. 2022 §4) cost one ``B O I P`` product and two
    ``B P^2 (O + I)`` ones, where the materialised gradient costs three ``B O I P`` products (forward and backward)
    and several passes over its ``B O I`` values. :func:`factor_at` says when that pays. ``shape``: the
    parameter's."""

    g: torch.Tensor
    a: torch.Tensor
    shape: torch.Size

    def materialise(self) -> torch.Tensor:
        """``(B, *shape)``: the per-sample gradients themselves."""
        return outer_sum(self.g, self.a).view(len(self.g), *self.shape)

    def dot_and_square(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(<G_i, T_i>, |G_i|^2)`` per sample for a constant target ``rows`` ``(B, O * I)``."""
        target = rows.view(len(rows), self.g.shape[1], -1)
        dot = (self.g * torch.bmm(target, self.a)).sum((1, 2))
        grams = torch.bmm(self.g.transpose(1, 2), self.g) * torch.bmm(self.a.transpose(1, 2), self.a)
        return dot, grams.sum((1, 2))


FACTORED = (RankOne, LowRank)


def factor_at(outputs: int, inputs: int, positions: int) -> bool:
    """Whether a weight's per-sample gradients are cheaper left as :class:`LowRank` factors: when the two Gram
    products, ``2 P^2 (O + I)``, cost less than the ``O I P`` product they save, i.e. ``2 P (O + I) < O I``
    (a ResNet-18's last stage at 32 x 32 inputs: P = 16, O = 512, I = 4608; never the small cnn's layers)."""
    return 2 * positions * (outputs + inputs) < outputs * inputs


def materialised(grads: Mapping[str, torch.Tensor | RankOne | LowRank]) -> dict[str, torch.Tensor]:
    """``grads`` with every factorisation (:data:`FACTORED`) multiplied out."""
    return {n: g.materialise() if isinstance(g, FACTORED) else g for n, g in grads.items()}


class _OuterSum(torch.autograd.Function):
    """``g a^T`` per sample, ``(B, O, P), (B, I, P) -> (B, O, I)``, whose derivatives come back in the layout of
    ``g`` and ``a`` (autograd's for ``bmm(g, a.transpose(1, 2))`` returns ``a``'s transposed, and the fold that
    takes it back to a convolution's input is 6x slower on such a tensor). Differentiable twice."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(g, a)
        return torch.bmm(g, a.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g, a = ctx.saved_tensors
        grad_g = torch.bmm(grad, a) if ctx.needs_input_grad[0] else None
        return grad_g, torch.bmm(grad.transpose(1, 2), g) if ctx.needs_input_grad[1] else None


def outer_sum(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sum_p g[:, :, p] a[:, :, p]^T`` per sample, ``(B, O, P), (B, I, P) -> (B, O, I)``."""
    if g.shape[2] == 1:
        return _Outer.apply(g.squeeze(2), a.squeeze(2))
    return _OuterSum.apply(g, a)
