"""The attacker's copy of the model whose dummy gradients the inversion compares with the received ones.

The dummy gradients themselves come from the per-sample engine :class:`fedleak.fl.per_sample.SampleGradients`:
one lane per victim (and restart), each lane's random modules using that lane's draw. A victim whose gradient is
the mean over a batch of B > 1 samples gets :class:`LaneBatchGradients` instead.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from fedleak.fl.training import auxiliary_modules, sample_losses


def attack_copy(model: nn.Module, device) -> nn.Module:
    """The attacker's copy of the model, in training mode like the client's step. Batch norm layers use the
    statistics of each B = 1 input and keep no running statistics (required under ``vmap``)."""
    attacked = copy.deepcopy(model).to(device)
    replace_all_batch_norm_modules_(attacked)
    for parameter in attacked.parameters():
        parameter.requires_grad_(False)
    return attacked.train()


class LaneBatchGradients:
    """``engine(x (L, B, *input), y (L, B) labels or (L, B, K) label probabilities)`` -> ``name -> (L, *shape)``:
    the mean gradient of each lane's batch of B dummy samples (the gradient a client sends for one step on B
    samples), differentiable in ``x`` and ``y``. Samples of one lane meet in batch norm; lanes never do
    (``vmap`` over lanes). Random modules draw afresh per lane."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        parameters = dict(model.named_parameters())
        self.model, self.names = model, list(names)
        self.auxiliary = auxiliary_modules(model)
        self._weights = {n: parameters[n].detach() for n in self.names}
        self._constants = {n: p.detach() for n, p in parameters.items() if n not in self.names}
        self._constants.update(dict(model.named_buffers()))
        self._vmapped = vmap(grad(self._batch_loss), in_dims=(None, 0, 0), randomness="different")

    def _batch_loss(self, weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = functional_call(self.model, {**weights, **self._constants}, (x,))
        return sample_losses(self.model, outputs, y, modules=self.auxiliary).mean()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._vmapped(self._weights, x, y)
