"""Dummy gradients of many independent B = 1 victims in one call: ``torch.func`` ``grad`` inside ``vmap``, so
the distance can be differentiated back to every victim's dummy image (double backpropagation) in one pass.

Each lane's random modules read that lane's draw through :func:`fedleak.defenses.stochastic.overridden`; random
modules without a draw make a fresh, independent draw per lane (``vmap(randomness="different")``).
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from fedleak.defenses.stochastic import overridden
from fedleak.fl.training import task_loss

LaneGradients = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def attack_copy(model: nn.Module, device) -> nn.Module:
    """The attacker's copy of the model, in training mode like the client's step. Batch norm layers use the
    statistics of each B = 1 input and keep no running statistics (required under ``vmap``)."""
    attacked = copy.deepcopy(model).to(device)
    replace_all_batch_norm_modules_(attacked)
    for parameter in attacked.parameters():
        parameter.requires_grad_(False)
    return attacked.train()


def lane_gradients(model: nn.Module, names: Sequence[str]) -> LaneGradients:
    """A function ``(x (L, *input), y (L,) labels or (L, C) label probabilities, draws name -> (L, 1, ...))``
    -> ``name -> (L, *shape)``: the gradient of the training loss (:func:`fedleak.fl.training.task_loss`, so
    PRECODE/CVB's KL term is included) of each lane's single input, for the parameters ``names``."""
    parameters = dict(model.named_parameters())
    missing = [n for n in names if n not in parameters]
    if missing:
        raise ValueError(f"the model has no parameters {missing}")
    constants = {n: p.detach() for n, p in parameters.items() if n not in names}
    constants.update(dict(model.named_buffers()))
    wanted = {n: parameters[n].detach() for n in names}

    def loss(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, draws: dict[str, torch.Tensor]):
        with overridden(model, draws):
            outputs = functional_call(model, {**weights, **constants}, (x.unsqueeze(0),))
            return task_loss(model, outputs, y.unsqueeze(0))

    per_lane = vmap(grad(loss), in_dims=(None, 0, 0, 0), randomness="different")

    def gradients(x: torch.Tensor, y: torch.Tensor, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return per_lane(wanted, x, y, draws)

    return gradients
