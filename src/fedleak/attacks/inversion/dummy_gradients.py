"""The attacker's copy of the model whose dummy gradients the inversion compares with the received ones.

The dummy gradients of B = 1 victims come from :class:`LaneGradients`: one lane per victim (and restart), each
lane's random modules using that lane's draw; the per-layer engine (:mod:`fedleak.fl.layerwise_gradients`) where
it applies (behind Dropout, PRECODE and CVB too when every lane's draws are given), with the weights applied once
per sample left factored for the distance, else the per-sample engine
:class:`fedleak.fl.per_sample.SampleGradients`. A victim whose gradient is the mean over a batch of B > 1 samples
gets :class:`LaneBatchGradients` instead.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from fedleak.models.stochastic import forget_last_forward, overriding, stochastic_modules
from fedleak.fl.factored import LowRank, RankOne
from fedleak.fl.layerwise_gradients import layerwise_gradients, layerwise_layers
from fedleak.fl.per_sample import SampleGradients
from fedleak.fl.training import auxiliary_modules, sample_losses


def attack_copy(model: nn.Module, device) -> nn.Module:
    """The attacker's copy of the model, in training mode like the client's step. Batch norm layers use the
    statistics of each B = 1 input and keep no running statistics (required under ``vmap``)."""
    attacked = copy.deepcopy(model).to(device)
    replace_all_batch_norm_modules_(attacked)
    for parameter in attacked.parameters():
        parameter.requires_grad_(False)
    return attacked.train()


class LaneGradients:
    """``engine(x (L, *input), y (L,) labels or (L, K) label probabilities, draws name -> (L, 1, ...))`` ->
    ``name -> (L, *shape)``, :class:`RankOne` or :class:`LowRank`: the gradient of each lane's one dummy sample,
    differentiable in ``x`` and ``y`` (and the draws).

    A model with random defense modules takes the per-layer engine too when every one of them is given its
    lanes' draws (the true draws of WIIG, the optimised ones of DIA/VBIA/CDIA): each lane's Dropout mask or
    bottleneck noise then acts on that lane's sample alone, and each lane's share of the bottlenecks' KL term
    comes from its own posterior in the batched forward. Random modules left to draw afresh take ``vmap``."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.model, self.names = model, list(names)
        self.samples = SampleGradients(model, self.names)
        self.randoms = dict(stochastic_modules(model))
        self.auxiliary = auxiliary_modules(model)
        undrawn = any(m not in self.randoms.values() for m in self.auxiliary)  # a loss term outside the protocol
        self._layers = None if undrawn else layerwise_layers(model, self.names, drawn=True, same=True)
        self._values = {n: p.detach() for n, p in model.named_parameters()}
        self._values.update(dict(model.named_buffers()))

    def _losses(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sample_losses(self.model, outputs, y, modules=self.auxiliary)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, draws=None) -> dict[str, torch.Tensor | RankOne | LowRank]:
        draws = {} if draws is None else dict(draws)
        if self._layers is None or set(draws) != set(self.randoms):
            return self.samples(x, y, draws)
        connected = torch.is_grad_enabled() and (
            x.requires_grad or y.requires_grad or any(d.requires_grad for d in draws.values()))
        try:
            with overriding(self.randoms, {n: d.flatten(0, 1) for n, d in draws.items()}):
                return layerwise_gradients(self.model, self._layers, self.names, self._values, x, y, self._losses,
                                           create_graph=connected, factored=True)
        finally:
            forget_last_forward(self.randoms.values())  # the batched forward's tensors, as SampleGradients does


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
