"""Fully connected layers that forward their input unaltered (Boenisch et al., paper 002, App. B).

Each carried feature goes to its own randomly chosen neuron through one random positive weight (sketch points
1-2), so it arrives scaled by the product of those weights, which the attacker divides out. The rows of neurons
that carry nothing get negative weights on the live inputs and a negative bias, so the ReLU kills them (point 3);
weights reading dead inputs keep their random values (point 4). Inputs are assumed non-negative ([0, 1] data or
ReLU outputs), so the carried values pass the ReLU unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.checks import NotApplicable

GAIN_RANGE = (0.5, 1.5)  # the random positive forwarding weights


@torch.no_grad()
def forward_linear(name: str, linear: nn.Linear, carried: torch.Tensor, scale: torch.Tensor, *,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewrite ``linear`` in place so that input features ``carried`` (D,) reach D random neurons; returns those
    neurons and the features' new scales."""
    count, out_features = len(carried), linear.out_features
    if linear.bias is None:
        raise NotApplicable(f"cannot forward the input through linear layer {name!r}: it has no bias")
    if out_features < count:
        raise NotApplicable(f"linear layer {name!r} has {out_features} neurons, fewer than the {count} features "
                         "to forward")
    weight, bias = linear.weight, linear.bias
    device = weight.device
    targets = torch.randperm(out_features, generator=generator)[:count].to(device)
    low, high = GAIN_RANGE
    gains = (low + (high - low) * torch.rand(count, generator=generator)).to(device, weight.dtype)
    columns = carried.to(device)
    dead = torch.ones(out_features, dtype=torch.bool, device=device)
    dead[targets] = False
    dead_rows = dead.nonzero().squeeze(1)
    weight[dead_rows.unsqueeze(1), columns] = -weight[dead_rows.unsqueeze(1), columns].abs()
    bias[dead_rows] = -bias[dead_rows].abs().clamp_min(1e-2)
    weight[targets.unsqueeze(1), columns] = torch.diag(gains)
    bias[targets] = 0.0
    return targets, scale.to(device) * gains
