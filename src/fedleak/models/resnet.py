"""ResNet-18 (He et al. 2016) with the CIFAR stem, the benign model of Wang & Li (paper 000, Fig. 3, Table 1).

Stem: 3x3 convolution, stride 1, no max-pool; four stages of two BasicBlocks with widths ``w, 2w, 4w, 8w``
(``w = 64``), stride 2 from the second stage on; global average pooling; one Linear classifier.
``norm="batch"`` uses BatchNorm (the layers SEER exploits, paper 000 §3); ``norm="group"`` uses GroupNorm
with ``gcd(32, channels)`` groups, which normalises each sample on its own; ``norm="layer"`` uses layer norm over
(channels, height, width), i.e. GroupNorm with one group (the per-sample norms of paper 000 §4.1.1).

Children, in order: ``stem`` (``conv``, ``norm``, ``relu``), ``layer1`` ... ``layer4`` (each two
:class:`BasicBlock` named ``"0"``, ``"1"``), ``pool``, ``flatten``, ``classifier``.
Defense insertion point: after ``layer1``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import image_shape
from fedleak.models.layers import sequential

NORMS = ("batch", "group", "layer")


def make_norm(norm: str, channels: int) -> nn.Module:
    """BatchNorm2d, GroupNorm(gcd(32, channels)) or layer norm (GroupNorm with one group) over ``channels``."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    return nn.GroupNorm(math.gcd(32, channels), channels)


class BasicBlock(nn.Module):
    """Two 3x3 conv-norm layers with a residual connection (He et al. 2016, Fig. 2).

    Children: ``conv1``, ``norm1``, ``relu1``, ``conv2``, ``norm2``, ``shortcut`` (Identity, or a 1x1 conv +
    norm where the stride or width changes), ``relu2`` applied after the sum.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = sequential(conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                       norm=make_norm(norm, out_channels))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


@MODELS.register("resnet18")
def build_resnet18(input_shape: tuple[int, ...], num_classes: int, norm: str = "batch",
                   width: int = 64) -> nn.Sequential:
    """CIFAR-stem ResNet-18 for ``(channels, height, width)`` images; ``width`` is the first stage's width."""
    channels, height, image_width = image_shape(input_shape, "resnet18")
    if norm not in NORMS:
        raise ValueError(f"resnet18: unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        raise ValueError(f"resnet18: width must be a positive int, got {width!r}")
    # Three stride-2 stages: the last feature map is ceil(H/8) x ceil(W/8). BatchNorm in training needs more
    # than one value per channel, so a 1x1 map would fail on a batch of one.
    if norm == "batch" and math.ceil(height / 8) * math.ceil(image_width / 8) < 2:
        raise ValueError(f"resnet18: input_shape {input_shape} leaves a 1x1 map in layer4, where batch norm "
                         f"cannot train on a batch of one; use larger images or norm='group'")
    stem = sequential(conv=nn.Conv2d(channels, width, 3, stride=1, padding=1, bias=False),
                      norm=make_norm(norm, width), relu=nn.ReLU())
    layers, in_channels = {}, width
    for stage in range(4):
        out_channels, stride = width * 2**stage, 1 if stage == 0 else 2
        layers[f"layer{stage + 1}"] = nn.Sequential(BasicBlock(in_channels, out_channels, stride, norm),
                                                    BasicBlock(out_channels, out_channels, 1, norm))
        in_channels = out_channels
    model = sequential(stem=stem, **layers, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                       classifier=nn.Linear(in_channels, num_classes))
    # the authors' ResNet: one Dropout on the pooled features, CVB after layer1 (K = width / 2)
    model.defense_points = {"dropout": ("flatten",), "cvb": {"after": "layer1", "beta": 5e-5, "kernel_size": 5}}
    return model
