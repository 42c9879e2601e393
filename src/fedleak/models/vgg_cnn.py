"""The VGG-inspired CNN of Boenisch et al. (paper 002, Table 7).

Conv 128, 256, 512 (3x3, stride 1, same padding, ReLU), Flatten, Dense 1000 ReLU, Dense #classes (logits).
The paper's default is large on 32x32 images (512*32*32*1000 = 524M weights in ``fc1``); ``channels`` and
``hidden`` shrink it. The convolutions can be set to forward their input unaltered (paper 002 §7, Fig. 3) so
the first dense layer ``fc1.linear`` (bias, then ReLU) receives the image and is the extraction layer.

Children, in order: ``block1``, ``block2``, ``block3`` (each ``conv`` + ``relu``), ``flatten``, ``fc1``
(``linear`` + ``relu``), ``classifier``.
"""
from __future__ import annotations

import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import image_shape
from fedleak.models.layers import conv_relu, linear_relu, sequential

CHANNELS = (128, 256, 512)
HIDDEN = 1000


@MODELS.register("vgg_cnn")
def build_vgg_cnn(input_shape: tuple[int, ...], num_classes: int, channels: tuple[int, ...] = CHANNELS,
                  hidden: int = HIDDEN) -> nn.Sequential:
    """Boenisch et al.'s VGG-inspired CNN for ``(channels, height, width)`` images."""
    in_channels, height, width = image_shape(input_shape, "vgg_cnn")
    channels = tuple(channels)
    if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in channels):
        raise ValueError(f"vgg_cnn: channels must be a non-empty sequence of positive ints, got {channels!r}")
    ins = (in_channels,) + channels[:-1]
    blocks = {f"block{i + 1}": conv_relu(c_in, c_out, 3, 1, "same")
              for i, (c_in, c_out) in enumerate(zip(ins, channels))}
    return sequential(**blocks, flatten=nn.Flatten(), fc1=linear_relu(channels[-1] * height * width, hidden),
                      classifier=nn.Linear(hidden, num_classes))
