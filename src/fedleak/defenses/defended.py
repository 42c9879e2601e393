"""What a client defense changes: the model it trains, how it computes a gradient, and the mods around it.

Each defense in :data:`fedleak.defenses.DEFENSES` is a function ``(target: Defended, **params) -> Defended``:
Dropout, PRECODE and CVB insert a module into ``target.model``; DP-SGD replaces ``target.gradient_fn``;
gradient pruning appends a client mod.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from fedleak.fl.client import ClientMod
from fedleak.fl.training import GradientFn, batch_gradients


@dataclass
class Defended:
    """A client's defended training recipe for one model (``model_name`` as in :func:`fedleak.models.build_model`,
    ``input_shape`` without the batch dimension)."""

    model: nn.Module
    model_name: str
    input_shape: tuple[int, ...]
    gradient_fn: GradientFn = batch_gradients
    mods: tuple[ClientMod, ...] = ()
