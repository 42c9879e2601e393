"""What a client defense changes: the model it trains, how it computes a gradient, and the mods around it; and
what the defended client lets the server know about it.

Each defense in :data:`fedleak.defenses.DEFENSES` is a function ``(target: Defended, **params) -> Defended``:
Dropout, PRECODE and CVB insert a module into ``target.model``; DP-SGD replaces ``target.gradient_fn`` (and
discloses its clip and sigma); gradient pruning appends a client mod.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from fedleak.models.stochastic import last_draws
from fedleak.fl.client import ClientMod
from fedleak.fl.training import GradientFn, batch_gradients


def _no_noise() -> dict[str, torch.Tensor]:
    return {}


@dataclass
class Defended:
    """A client's defended training recipe for one model (``model_name`` as in :func:`fedleak.models.build_model`,
    named in messages: placement reads the model's declared ``defense_points`` and its traced anatomy;
    ``input_shape`` without the batch dimension). ``names``: the defenses applied, in order; ``disclosure``: their
    parameters the server knows (paper 001 §4.4: the DP-SGD clip and sigma), as :class:`fedleak.attacks.base.
    Knowledge` fields; ``last_noise``: the noise the gradient function added in its last call (DP-SGD's), which
    only the WIIG baseline is given."""

    model: nn.Module
    model_name: str
    input_shape: tuple[int, ...]
    gradient_fn: GradientFn = batch_gradients
    mods: tuple[ClientMod, ...] = ()
    names: tuple[str, ...] = ()
    disclosure: dict[str, Any] = field(default_factory=dict)
    last_noise: Callable[[], Mapping[str, torch.Tensor]] = _no_noise

    def disclosed(self) -> dict[str, Any]:
        """What the server may know of the client's defenses (paper 001 §4.4), as ``Knowledge`` fields: their
        names and disclosed parameters."""
        return {"defenses": self.names, **self.disclosure}

    def last_randomness(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The client's true randomness of its last step: each random module's draw and the gradient noise."""
        return {k: v.detach() for k, v in last_draws(self.model).items()}, dict(self.last_noise())
