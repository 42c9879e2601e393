"""What the server received: the victims' gradients, as the gradient-inversion loop reads them (what it knows
besides is :class:`fedleak.attacks.base.Knowledge`).

The wall of breaching holds here too: the received gradients are all the attack sees of the victims; their
images and labels travel separately and are used only for scoring (see :mod:`fedleak.attacks.inversion.victims`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from fedleak.checks import check_number


@dataclass
class ReceivedGradients:
    """The victims' shared gradients, ``name -> (V, *parameter shape)``, one row per independent victim (each
    the mean gradient of one local step on ``batch_size`` samples; 1 by default). ``labels`` ``(V,)`` (``(V, B)``
    for batches) only when the server knows them; otherwise the attack recovers them analytically."""

    gradients: Mapping[str, torch.Tensor]
    labels: torch.Tensor | None = None
    batch_size: int = 1

    def __post_init__(self):
        if not self.gradients:
            raise ValueError("received gradients are empty")
        counts = {name: g.shape[0] if g.dim() else 0 for name, g in self.gradients.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"received gradients must be stacked over the same number of victims; got {counts}")
        check_number("batch_size", self.batch_size, low=1, integer=True)
        want = (self.victims,) if self.batch_size == 1 else (self.victims, self.batch_size)
        if self.labels is not None and tuple(self.labels.shape) != want:
            raise ValueError(f"received labels must have shape {want}, got {tuple(self.labels.shape)}")

    @property
    def victims(self) -> int:
        return next(iter(self.gradients.values())).shape[0]
