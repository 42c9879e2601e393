"""Named building blocks shared by the models.

Each block is an ``nn.Sequential`` whose children have fixed names, so attacks and detectors can address
``<block>.conv`` / ``<block>.linear`` and defenses can be inserted between blocks
(:func:`fedleak.models.insertion.insert_module`). Activations are out-of-place so that gradient-inversion
attacks can differentiate through them twice.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn


def conv_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int | str,
              norm: nn.Module | None = None) -> nn.Sequential:
    """``Conv2d`` (with bias) followed by ReLU, as children ``conv`` and ``relu`` (with ``norm`` between them,
    as child ``norm``, when given)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    if norm is None:
        return nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU()))
    return nn.Sequential(OrderedDict(conv=conv, norm=norm, relu=nn.ReLU()))


def linear_relu(in_features: int, out_features: int) -> nn.Sequential:
    """``Linear`` (with bias) followed by ReLU, as children ``linear`` and ``relu``."""
    return nn.Sequential(OrderedDict(linear=nn.Linear(in_features, out_features), relu=nn.ReLU()))


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution: ``floor((size + 2 padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel_size) // stride + 1


def sequential(**children: nn.Module) -> nn.Sequential:
    """An ``nn.Sequential`` whose children carry the given names, in the given order."""
    return nn.Sequential(OrderedDict(children))


class ClassTokenPool(nn.Module):
    """Select the class token ``x[:, 0]`` of a token sequence ``(B, N, D) -> (B, D)`` (ViT read-out)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class MeanPool(nn.Module):
    """Average a token sequence over its tokens, ``(B, N, D) -> (B, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)
