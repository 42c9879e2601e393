"""Passive analytic extraction by an honest-but-curious server (Boenisch et al., paper 002, §5.1, Eq. 5).

The server sends the model unchanged and reads the inputs out of the gradient of the first fully connected layer,
provided that layer reads the raw input (nothing but flattening runs before it). Which rows hold a single input is
left to chance: the initialisation decides it (paper 002 Table 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from fedleak.attacks.analytic import LayerSecret, extraction_layer, identity_map
from fedleak.checks import check_levels
from fedleak.models.anatomy import Anatomy, trace


@dataclass
class PassiveConfig:
    """``layer``: the extraction layer (default: the first fully connected layer to run); ``levels``: the data's
    quantisation the server assumes (255: 8-bit images; ``None`` for real-valued inputs)."""

    input_shape: tuple[int, ...]
    layer: str | None = None
    levels: int | None = 255

    def __post_init__(self):
        check_levels("passive", self.levels)


def input_layer(anatomy: Anatomy, input_shape: tuple[int, ...] | None, layer: str | None = None, *,
                levels: int | None = 255) -> LayerSecret | None:
    """The secret of the fully connected layer ``layer`` (default: the first) of a traced model when it reads the
    raw input of ``input_shape``, else ``None`` (also when the input shape is unknown)."""
    if input_shape is None:
        return None
    name, linear = extraction_layer(anatomy, layer)
    before = [leaf for leaf in anatomy.before(name) if not isinstance(leaf.module, (nn.Flatten, nn.Identity))]
    if before or linear.in_features != math.prod(input_shape):
        return None
    return LayerSecret(name, identity_map(tuple(input_shape), levels=levels))


def passive(model: nn.Module, config: PassiveConfig) -> tuple[nn.Module, LayerSecret]:
    """Passive extraction (paper 002 §5.1): the model unchanged, and the extraction layer as the secret."""
    secret = input_layer(trace(model, input_shape=config.input_shape), config.input_shape, config.layer,
                         levels=config.levels)
    if secret is None:
        raise ValueError(f"passive extraction needs a fully connected layer that reads the raw input "
                         f"{tuple(config.input_shape)}; the first one of {type(model).__name__} does not")
    return model, secret
