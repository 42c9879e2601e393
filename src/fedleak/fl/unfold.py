"""The patches a convolution sees, and their sum back into an image: ``F.unfold`` and ``F.fold`` without
dilation, each the other's derivative, faster on CPU than ATen's im2col and col2im and equal to them bit for bit
(:func:`unfold_patches`, :func:`fold_patches`). Both are differentiable twice (double backpropagation through the
per-sample weight gradients of :mod:`fedleak.fl.layerwise_gradients`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _Unfold(torch.autograd.Function):
    """``F.unfold`` without dilation, ``(B, C, H, W) -> (B, C kh kw, P)``, forward as one copy of a strided view
    (2x faster than ``im2col`` on one CPU thread), backward :class:`_Fold` (the view's own backward is slower
    still). Differentiable twice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]):
        ctx.size, ctx.kernel, ctx.stride, ctx.padding = x.shape[2:], kernel, stride, padding
        if any(padding):
            x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        view = x.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])  # (B, C, oh, ow, kh, kw)
        return view.permute(0, 1, 4, 5, 2, 3).reshape(len(x), x.shape[1] * kernel[0] * kernel[1], -1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _Fold.apply(grad, ctx.size, ctx.kernel, ctx.stride, ctx.padding), None, None, None


# Below this many values per kernel offset, ATen's fold (col2im) is faster: the offsets' additions each run on
# one thread there (TensorIterator's grain size), and the per-call cost of kh * kw of them dominates.
_PARALLEL_FOLD = 32768


def _adds_pay(grad: torch.Tensor, offsets: int, per_offset: int) -> bool:
    """Whether :class:`_Fold`'s strided additions beat ATen's fold: on the CPU (CUDA's fold is parallel), for large
    folds, with more than one thread or at most 3 x 3 offsets (measured on one thread: 4 x 64 x 32 x 32 at 3 x 3,
    1.3 against 3.8 ms; 128 x 16 x 14 x 14 at 5 x 5, 5.5 against 3.3 ms)."""
    return grad.device.type == "cpu" and per_offset >= _PARALLEL_FOLD and (
        torch.get_num_threads() > 1 or offsets <= 9)


class _Fold(torch.autograd.Function):
    """``F.fold`` without dilation, ``(B, C kh kw, P) -> (B, C, H, W)``: the sum of every kernel offset's
    strided slice, added in col2im's order (offsets ascending from zero), so the result is bit for bit
    ``F.fold``'s. ATen's col2im runs one thread over the samples; these additions use every intra-op thread
    (measured on 2 threads: 128 x 3 x 32 x 32 at 5 x 5, stride 2, 2.2 against 3.0 ms; 4 x 64 x 32 x 32 at
    3 x 3, padding 1, 0.7 against 3.3 ms). The others keep ``F.fold`` (:func:`_adds_pay`). Differentiable twice
    (its derivative is :class:`_Unfold`)."""

    @staticmethod
    def forward(ctx, grad: torch.Tensor, size, kernel: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]):
        ctx.kernel, ctx.stride, ctx.padding = kernel, stride, padding
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        height, width = size[0] + 2 * ph, size[1] + 2 * pw
        rows, cols = (height - kh) // sh + 1, (width - kw) // sw + 1
        batch, channels = len(grad), grad.shape[1] // (kh * kw)
        if not _adds_pay(grad, kh * kw, batch * channels * rows * cols):
            return F.fold(grad.contiguous(), tuple(size), kernel, padding=padding, stride=stride)
        offsets = grad.reshape(batch, channels, kh, kw, rows, cols)
        out = grad.new_zeros(batch, channels, height, width)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i:i + sh * (rows - 1) + 1:sh, j:j + sw * (cols - 1) + 1:sw] += offsets[:, :, i, j]
        return out[:, :, ph:ph + size[0], pw:pw + size[1]] if ph or pw else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _Unfold.apply(grad, ctx.kernel, ctx.stride, ctx.padding), None, None, None, None


def unfold_patches(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
                   ) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C kh kw, P)``: ``F.unfold(x, kernel, stride=stride, padding=padding)``."""
    return _Unfold.apply(x, kernel, stride, padding)


def fold_patches(columns: torch.Tensor, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int]) -> torch.Tensor:
    """``(B, C kh kw, P) -> (B, C, H, W)``: ``F.fold(columns, size, kernel, stride=stride, padding=padding)``."""
    return _Fold.apply(columns, size, kernel, stride, padding)
