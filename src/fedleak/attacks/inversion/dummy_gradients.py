"""The attacker's copy of the model whose dummy gradients the inversion compares with the received ones.

The dummy gradients themselves come from the per-sample engine :class:`fedleak.fl.per_sample.SampleGradients`:
one lane per victim (and restart), each lane's random modules using that lane's draw.
"""
from __future__ import annotations

import copy

import torch.nn as nn
from torch.func import replace_all_batch_norm_modules_


def attack_copy(model: nn.Module, device) -> nn.Module:
    """The attacker's copy of the model, in training mode like the client's step. Batch norm layers use the
    statistics of each B = 1 input and keep no running statistics (required under ``vmap``)."""
    attacked = copy.deepcopy(model).to(device)
    replace_all_batch_norm_modules_(attacked)
    for parameter in attacked.parameters():
        parameter.requires_grad_(False)
    return attacked.train()
