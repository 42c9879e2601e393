"""Trap weights (Boenisch et al., paper 002, §6 and Algorithm 1).

Each row of the extraction layer gets a random half of negative weights drawn from N(mu, sigma) restricted to
negative values, and on the other half the same magnitudes scaled by ``s < 1`` with a positive sign, shuffled.
Neuron ``i`` then fires only when the features under its positive weights outweigh those under its negative ones
(Eq. 8), which in a batch tends to hold for one input only, so its gradient row holds that input (§5.2).
The bias is zero (the paper's analysis suppresses it). When the layer is not the first, the layers before it
forward the input (§7, App. B; :mod:`forwarding`) and Algorithm 1 is applied to the columns that receive it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.checks import CheckedConfig, checked, levels_field, number_field, positive_field, seed_field
from fedleak.attacks.analytic import LayerSecret, extraction_layer
from fedleak.attacks.malicious.forwarding import forward_input
from fedleak.models.anatomy import trace


@dataclass
class TrapWeightsConfig(CheckedConfig, what="trap weights"):
    """Algorithm 1's scaling factor ``scale_factor`` (s) and negative-weight distribution N(``mean``, ``std``)
    (§6.2 uses sigma = 0.5); ``layer`` the extraction layer (default: the first fully connected layer); ``levels``
    the data's quantisation the attacker assumes (255: 8-bit images; ``None`` for real-valued inputs)."""

    input_shape: tuple[int, ...]
    scale_factor: float = checked(0.95, label="scaling factor s", low=0, low_open=True)
    mean: float = number_field(0.0)
    std: float = positive_field(0.5)
    layer: str | None = None
    levels: int | None = levels_field()
    seed: int = seed_field()


def trap_rows(num_rows: int, length: int, *, scale_factor: float, mean: float = 0.0, std: float = 0.5,
              generator: torch.Generator) -> torch.Tensor:
    """Algorithm 1 for ``num_rows`` rows of ``length`` at once: (num_rows, length) weights.

    The negative samples come from N(mean, std) conditioned on being negative (inverse-CDF sampling). One random
    permutation per row places the negatives (lines 1, 5) and their scaled mirrors (lines 2, 4, 6); since the
    places are random, so is the pairing of a positive weight with a negative one, which is the shuffle of
    lines 5-6. With an odd ``length`` the one index left over is zero.
    """
    half = length // 2
    below_zero = torch.special.ndtr(torch.tensor(-mean / std, dtype=torch.float64))
    uniform = torch.rand(num_rows, half, generator=generator, dtype=torch.float64) * below_zero
    negatives = (mean + std * torch.special.ndtri(uniform.clamp_min(1e-300))).clamp_max(0.0).float()
    order = torch.stack([torch.randperm(length, generator=generator) for _ in range(num_rows)])
    rows = torch.zeros(num_rows, length)
    rows.scatter_(1, order[:, :half], negatives)
    rows.scatter_(1, order[:, half:2 * half], -scale_factor * negatives)
    return rows


@torch.no_grad()
def set_trap_weights(linear: nn.Linear, columns: torch.Tensor, config: TrapWeightsConfig,
                     generator: torch.Generator) -> None:
    """Algorithm 1 on the ``columns`` of every row of ``linear`` (the features that carry the input); zero bias.
    The other columns read dead features and keep their values."""
    rows = trap_rows(linear.out_features, len(columns), scale_factor=config.scale_factor, mean=config.mean,
                     std=config.std, generator=generator)
    weight = linear.weight
    weight[:, columns.to(weight.device)] = rows.to(weight.device, weight.dtype)
    linear.bias.zero_()


def trap_weights(model: nn.Module, config: TrapWeightsConfig) -> tuple[nn.Module, LayerSecret]:
    """A copy of ``model`` with trap weights at the extraction layer (and input forwarding before it), and the
    secret the server keeps. Extract with :func:`fedleak.attacks.analytic.extract_at_layer`."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=config.input_shape)
    name, linear = extraction_layer(anatomy, config.layer)
    generator = torch.Generator().manual_seed(config.seed)
    input_map = forward_input(anatomy, name, generator=generator, levels=config.levels)
    set_trap_weights(linear, input_map.positions, config, generator)
    return model, LayerSecret(name, input_map)
