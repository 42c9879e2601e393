"""Layers with constant parameters whose derivatives leave out what a constant does not need, differentiable
again. The per-layer engine (:mod:`fedleak.fl.layerwise_gradients`) runs a model's convolutions as
:class:`FixedConv` whenever their parameters are constants, which they are in every engine call (the inversion's
dummy gradients, DP-SGD's and D-SNR's per-sample gradients: the input gradient is then a transposed
convolution), and its ReLUs as :class:`ReLU` when the per-sample gradients are differentiated in the input (the
gradient inversion's double backpropagation), where autograd's own derivatives of ``convolution_backward`` and
``threshold_backward`` also compute a weight gradient and a zero gradient that nothing reads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class FixedConv(torch.autograd.Function):
    """``F.conv2d`` with a constant weight and bias, whose input gradient (:class:`FixedConvInputGrad`) has a
    double backward of one convolution: autograd's own derivative of ``convolution_backward`` also computes the
    gradient of the weight, which the weight does not need (measured on one CPU thread at 128 x 16 x 14 x 14 into
    32 channels: 2 ms of a 60 ms inversion iteration). The input gradient is :func:`transposed_conv`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.size, ctx.weight, ctx.options = x.shape, weight, (stride, padding, dilation, groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        return FixedConvInputGrad.apply(grad, ctx.weight, ctx.size, *ctx.options), None, None, None, None, None, None


def transposed_conv(grad, weight, size, stride, padding, dilation, groups) -> torch.Tensor:
    """``torch.nn.grad.conv2d_input``, the convolution's input gradient, as ``F.conv_transpose2d`` (the output
    padding recovers the input's size): on CPU mkldnn's deconvolution, 10-15% faster than the input gradient of
    ``convolution_backward`` (one thread, 16 x 32 x 5 x 5 into 16 x 14 x 14: 0.38 against 0.43 ms). The same
    sum; bit for bit the same on the cnn's shapes, added in another order on some others (float rounding)."""
    extra = [n - ((o - 1) * s - 2 * p + d * (k - 1) + 1) for n, o, s, p, d, k in
             zip(size[2:], grad.shape[2:], stride, padding, dilation, weight.shape[2:])]
    return F.conv_transpose2d(grad, weight, None, stride, padding, extra, groups, dilation)


class FixedConvInputGrad(torch.autograd.Function):
    """The input gradient of :class:`FixedConv`; its derivative is the convolution itself (differentiable
    again through ``F.conv2d``)."""

    @staticmethod
    def forward(ctx, grad, weight, size, stride, padding, dilation, groups):
        ctx.weight, ctx.options = weight, (stride, padding, dilation, groups)
        return transposed_conv(grad, weight, size, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_grad):
        return F.conv2d(grad_grad, ctx.weight, None, *ctx.options), None, None, None, None, None, None


class ReLU(torch.autograd.Function):
    """``relu`` whose input gradient (:class:`ReLUGrad`) has the derivative of its cotangent alone: autograd's
    derivative of ``threshold_backward`` also gives the ReLU's output a gradient of zeros, which costs a tensor of
    zeros and an addition per layer per inversion iteration. The same kernels otherwise, so the same numbers."""

    @staticmethod
    def forward(ctx, x):
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return ReLUGrad.apply(grad, ctx.saved_tensors[0])


class ReLUGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, out):
        ctx.save_for_backward(out)
        return torch.ops.aten.threshold_backward(grad, out, 0)

    @staticmethod
    def backward(ctx, grad_grad):
        return ReLUGrad.apply(grad_grad, ctx.saved_tensors[0]), None
