"""Convolutions that forward their input unaltered (Boenisch et al., paper 002, §7 and Fig. 3).

For each input channel that carries the model input, one filter is zero everywhere except a one at the kernel
centre on that channel, with zero bias: with stride 1 and "same" zero padding it copies the channel. The other
filters keep their random weights (the attacker ignores their noise maps), except at the last convolution before
the fully connected layer, where they are made negative so that the ReLU zeroes them and only copies reach it.
Inputs are assumed in [0, 1] (§6.2), so the copies pass the ReLUs unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.checks import NotApplicable


def check_size_preserving(name: str, conv: nn.Conv2d) -> None:
    """Raise :class:`NotApplicable` unless ``conv`` keeps the spatial size with one centred tap (§7 "Two
    Dimensional Input")."""
    kernel = conv.kernel_size
    same = conv.padding == "same" or tuple(conv.padding) == (kernel[0] // 2, kernel[1] // 2)
    problems = []
    if tuple(conv.stride) != (1, 1):
        problems.append(f"stride {tuple(conv.stride)}")
    if tuple(conv.dilation) != (1, 1):
        problems.append(f"dilation {tuple(conv.dilation)}")
    if conv.groups != 1:
        problems.append(f"groups {conv.groups}")
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        problems.append(f"even kernel {tuple(kernel)}")
    if not same or conv.padding_mode != "zeros":
        problems.append(f"padding {conv.padding!r} ({conv.padding_mode})")
    if conv.bias is None:
        problems.append("no bias")
    if problems:
        raise NotApplicable(f"cannot forward the input through convolution {name!r}: {', '.join(problems)} "
                         "(needs stride 1, odd kernel, 'same' zero padding, a bias)")


@torch.no_grad()
def forward_conv(name: str, conv: nn.Conv2d, carried: torch.Tensor, *, last: bool,
                 generator: torch.Generator) -> torch.Tensor:
    """Rewrite ``conv`` in place so that input channels ``carried`` (C,) are copied to C randomly placed output
    channels, which are returned (the indices alpha of the next layer, §7 "Three Dimensional Input")."""
    check_size_preserving(name, conv)
    count, out_channels = len(carried), conv.out_channels
    if out_channels < count:
        raise NotApplicable(f"convolution {name!r} has {out_channels} filters, fewer than the {count} channels to "
                            "forward")
    weight, bias = conv.weight, conv.bias
    targets = torch.randperm(out_channels, generator=generator)[:count].to(weight.device)
    centre = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
    weight[targets] = 0.0
    weight[targets, carried.to(weight.device), centre[0], centre[1]] = 1.0
    bias[targets] = 0.0
    if last:
        noise = torch.ones(out_channels, dtype=torch.bool, device=weight.device)
        noise[targets] = False
        weight[noise] = -weight[noise].abs()
        bias[noise] = -bias[noise].abs().clamp_min(1e-2)
    return targets
