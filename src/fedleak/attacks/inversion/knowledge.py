"""What the server received and what it knows besides: the two inputs of every gradient-inversion attack.

The wall of breaching holds here too: the received gradients are all the attack sees of the victims; their
images and labels travel separately and are used only for scoring (see :mod:`fedleak.attacks.inversion.victims`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class LocalTraining:
    """The client's local training in FedAvg, which the server set up (Dimitrov et al. 2022 §3): plain SGD with
    learning rate ``lr`` on mini-batches of ``batch_size``, for ``epochs`` epochs over its data, or for ``steps``
    steps when set (one pass over ``steps * batch_size`` samples)."""

    lr: float
    batch_size: int
    epochs: int = 1
    steps: int | None = None

    def __post_init__(self):
        check_number("local lr", self.lr, low=0, low_open=True)
        check_number("local batch_size", self.batch_size, low=1, integer=True)
        check_number("local epochs", self.epochs, low=1, integer=True)
        if self.steps is not None:
            check_number("local steps", self.steps, low=1, integer=True)


@dataclass
class ServerKnowledge:
    """What an honest-but-curious server knows beyond the gradients (paper 001 §3.2 and §4.4).

    ``input_shape`` (C, H, W) of the data and ``input_range`` of its values (the box the dummy images are kept
    in); ``defenses``: names of the defenses the client used (CDIA targets Dropout, pruning and the privacy
    modules among them; the random modules themselves are part of the model); ``dp_clip``/``dp_sigma``: the
    DP-SGD parameters (DPIA, WIIG). The client's true randomness, which only the WIIG baseline is given:
    ``true_draws`` (random-module name -> ``(V, 1, ...)``, the draws of each victim's step) and ``true_dp_noise``
    (parameter name -> ``(V, *shape)``). ``local_training``: the clients' FedAvg recipe (attacks on FedAvg updates).
    """

    input_shape: tuple[int, ...]
    input_range: tuple[float, float] = (0.0, 1.0)
    defenses: tuple[str, ...] = ()
    dp_clip: float | None = None
    dp_sigma: float | None = None
    true_draws: Mapping[str, torch.Tensor] = field(default_factory=dict)
    true_dp_noise: Mapping[str, torch.Tensor] = field(default_factory=dict)
    local_training: LocalTraining | None = None

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.defenses = tuple(self.defenses)
        low, high = self.input_range
        if not low < high:
            raise ValueError(f"input_range must be (low, high) with low < high, got {self.input_range}")
        check_number("input_range low", low)
        check_number("input_range high", high)
        if self.dp_clip is not None:
            check_number("dp_clip", self.dp_clip, low=0, low_open=True)
        if self.dp_sigma is not None:
            check_number("dp_sigma", self.dp_sigma, low=0)
        if self.local_training is not None and not isinstance(self.local_training, LocalTraining):
            raise TypeError(f"local_training must be a LocalTraining, got {type(self.local_training).__name__}")
