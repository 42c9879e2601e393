"""The small CNN of Scheliga et al. (paper 001, §5 "Experimental Setup").

Three 5x5 convolutions with 16, 32 and 64 channels, stride 2, no padding, ReLU, then one fully connected
classification layer (logits; the softmax is part of the cross-entropy loss). On 3x32x32 the features end at
64x1x1, giving about 66k parameters (the 660 non-zero gradients left at 99% pruning, paper 001 §4.2).

Children, in order: ``block1``, ``block2``, ``block3`` (each ``conv`` + ``relu``), ``flatten``, ``classifier``.
``norm`` (not in the paper) puts a batch, group or layer norm between each ``conv`` and ``relu`` (child ``norm``):
the norms whose presence decides whether SEER works (paper 000 §4.1.1).
Defense insertion points: after ``block1`` (the first conv block) and before ``classifier`` (the output layer).
"""
from __future__ import annotations

import math

import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import image_shape
from fedleak.models.layers import conv_output_size, conv_relu, sequential

CHANNELS = (16, 32, 64)
KERNEL_SIZE = 5
STRIDE = 2
NORMS = ("none", "batch", "group", "layer")


def make_norm(norm: str, channels: int) -> nn.Module | None:
    """None, BatchNorm2d, GroupNorm(gcd(8, channels)) or layer norm (GroupNorm with one group) over ``channels``."""
    if norm == "none":
        return None
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(8, channels) if norm == "group" else 1, channels)


@MODELS.register("cnn")
def build_cnn(input_shape: tuple[int, ...], num_classes: int, padding: int = 0, norm: str = "none") -> nn.Sequential:
    """Scheliga et al.'s CNN for ``(channels, height, width)`` images.

    ``padding`` (default 0, as in the paper) pads every convolution; a 28x28 image is too small for three
    unpadded stride-2 5x5 convolutions (28 -> 12 -> 4), so MNIST-sized inputs need ``padding=2`` or resizing
    to 32x32.
    """
    channels, height, width = image_shape(input_shape, "cnn")
    if norm not in NORMS:
        raise ValueError(f"cnn: unknown norm {norm!r}; valid norms: {', '.join(NORMS)}")
    sizes = [(height, width)]
    for _ in CHANNELS:
        h, w = sizes[-1]
        if min(h, w) + 2 * padding < KERNEL_SIZE:
            raise ValueError(
                f"cnn: input_shape {input_shape} is too small for three stride-2 {KERNEL_SIZE}x{KERNEL_SIZE} "
                f"convolutions with padding={padding} (feature maps {sizes}); use larger images or padding=2"
            )
        sizes.append((conv_output_size(h, KERNEL_SIZE, STRIDE, padding),
                      conv_output_size(w, KERNEL_SIZE, STRIDE, padding)))
    ins = (channels,) + CHANNELS[:-1]
    blocks = {f"block{i + 1}": conv_relu(c_in, c_out, KERNEL_SIZE, STRIDE, padding, make_norm(norm, c_out))
              for i, (c_in, c_out) in enumerate(zip(ins, CHANNELS))}
    h, w = sizes[-1]
    model = sequential(**blocks, flatten=nn.Flatten(), classifier=nn.Linear(CHANNELS[-1] * h * w, num_classes))
    model.defense_points = {"cvb": {"after": "block1", "beta": 0.1, "kernel_size": 5}}  # after the first conv block
    return model
