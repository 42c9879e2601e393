"""Robbing the Fed: the imprint layer (Fowl et al., ICLR 2022; Wang & Li, paper 000, App. A.1.1 Eq. 16).

Every row of the imprint layer measures the same linear function of the input, ``h(x)`` = mean brightness, and
row ``i`` has bias ``-c_i`` where ``c_1 < c_2 < ...`` cut the distribution of ``h`` into bins of equal mass
(``c_i = mu + sigma * Phi^-1((i - 1) / K)`` from the inverse Gaussian CDF, with the server's estimate of the mean
``mu`` and spread ``sigma`` of ``h``). Row ``i`` fires for every input with ``h(x) > c_i`` and every firing row
receives the same ``dL/dy`` for a given input, so the difference of two adjacent rows' gradients holds only the
inputs whose ``h`` falls into that bin, and ``x = (G_W[i] - G_W[i+1]) / (G_b[i] - G_b[i+1])`` recovers an input
that is alone in its bin.

Two variants: ``"insert"`` adds an imprint block before the model (extra state-dict keys ``imprint.*``: an
architecture change that strict loading rejects, paper 000 §3.1), on any model that reads real-valued inputs
(:func:`fedleak.models.insertion.insert_before_input`); ``"reuse"`` rewrites the model's first fully
connected layer into the imprint and makes the next layer's columns equal, so that all rows get the same
``dL/dy`` (same architecture, but only for models whose first layer reads the input).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from fedleak.checks import (CheckedConfig, NotApplicable, checked, choice_field, levels_field, number_field,
                            positive_field)
from fedleak.attacks.analytic import (InputMap, active_rows, identity_map, individual_rows, extraction_layer,
                                      layer_gradients, map_to_input)
from fedleak.attacks.base import Reconstruction
from fedleak.attacks.passive import raw_input_reason
from fedleak.models.anatomy import trace
from fedleak.models.insertion import insert_before_input

VARIANTS = ("insert", "reuse")


class ImprintBlock(nn.Module):
    """The inserted imprint layer: ``x + mean_i ReLU(w_i . x + b_i)`` added to every input feature, so that the
    rest of the model still sees the image and every row's ``dL/dy`` is the same (the gradient of the sum)."""

    def __init__(self, num_features: int, num_bins: int):
        super().__init__()
        self.linear = nn.Linear(num_features, num_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise ValueError(f"the imprint layer measures real-valued inputs, got {x.dtype} (token ids?)")
        active = F.relu(self.linear(x.flatten(1)))
        return x + active.mean(dim=1).view(-1, *([1] * (x.dim() - 1)))


@dataclass
class RobbingConfig(CheckedConfig, what="imprint"):
    """``num_bins`` K (more bins than the batch size, Fowl et al.); the server's estimate ``feature_mean`` and
    ``feature_std`` of the mean brightness of inputs in [0, 1] (see :func:`brightness_prior`); ``variant``
    "insert" or "reuse" (which uses every neuron of the first layer as a bin, whatever ``num_bins``);
    ``levels`` the data's quantisation the attacker assumes."""

    input_shape: tuple[int, ...]
    num_bins: int = checked(128, low=2, integer=True)
    feature_mean: float = number_field(0.3)
    feature_std: float = positive_field(0.1)
    variant: str = choice_field(VARIANTS, "insert", label="variant")
    levels: int | None = levels_field()


@dataclass(frozen=True)
class ImprintSecret:
    """The imprint layer's name and the map of its inputs (the flattened model input)."""

    layer: str
    input_map: InputMap


def brightness_prior(inputs: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of the mean brightness of (public) inputs: the server's bin prior."""
    brightness = inputs.flatten(1).float().mean(dim=1)
    return float(brightness.mean()), float(brightness.std())


def bin_edges(config: RobbingConfig) -> torch.Tensor:
    """``c_1 .. c_K``: the lowest edge below any input, then equal-mass Gaussian quantiles (Eq. 16's bins)."""
    mass = torch.arange(1, config.num_bins, dtype=torch.float64) / config.num_bins
    quantiles = config.feature_mean + config.feature_std * torch.special.ndtri(mass)
    lowest = torch.tensor([config.feature_mean - 100.0 * config.feature_std], dtype=torch.float64)
    return torch.cat([lowest, quantiles]).float()


@torch.no_grad()
def _imprint(linear: nn.Linear, edges: torch.Tensor) -> None:
    weight = linear.weight
    weight.fill_(1.0 / linear.in_features)
    linear.bias.copy_(-edges.to(weight.device, weight.dtype))


def robbing_the_fed(model: nn.Module, config: RobbingConfig) -> tuple[nn.Module, ImprintSecret]:
    """A copy of ``model`` with the imprint layer (inserted or in its first linear layer), and the secret."""
    model = copy.deepcopy(model)
    features = math.prod(config.input_shape)
    edges = bin_edges(config)
    anatomy = trace(model, input_shape=config.input_shape)
    tokens = [step.name for step in anatomy.readers("input") if step.kind == "embedding"]
    if tokens:
        raise NotApplicable(f"the imprint layer measures real-valued inputs (mean brightness), but this model reads "
                            f"token ids into the embedding {tokens[0]!r}: a text model")
    if config.variant == "insert":
        parameter = next(model.parameters(), None)
        block = ImprintBlock(features, config.num_bins)
        if parameter is not None:
            block = block.to(parameter.device)
        _imprint(block.linear, edges)
        insert_before_input(model, "imprint", block)
        return model, ImprintSecret("imprint.linear", identity_map(config.input_shape, levels=config.levels))
    name, linear = extraction_layer(anatomy)
    reason = raw_input_reason(anatomy, name, config.input_shape)
    if reason:
        raise NotApplicable(f"the 'reuse' imprint needs a first linear layer that reads the input; {reason}")
    names = [layer.name for layer in anatomy.layers("linear")]
    if len(names) < 2:
        raise NotApplicable("the 'reuse' imprint needs a linear layer after the first")
    _, following = extraction_layer(anatomy, names[1])
    if following.in_features != linear.out_features:
        raise NotApplicable(f"{names[1]!r} does not read the output of {name!r}")
    _imprint(linear, bin_edges(RobbingConfig(config.input_shape, linear.out_features, config.feature_mean,
                                             config.feature_std)))
    with torch.no_grad():
        following.weight.copy_(following.weight[:, :1].expand_as(following.weight))
    return model, ImprintSecret(name, identity_map(config.input_shape, levels=config.levels))


def extract_imprint(update: Mapping[str, torch.Tensor], secret: ImprintSecret, *, device=None) -> Reconstruction:
    """Eq. 16: inputs from the differences of adjacent bins' gradients (the top bin against zero)."""
    weight, bias = layer_gradients(update, secret.layer, device=device)
    weight_step = weight - torch.cat([weight[1:], torch.zeros_like(weight[:1])])
    bias_step = bias - torch.cat([bias[1:], torch.zeros_like(bias[:1])])
    rows = active_rows(bias_step)
    inputs = map_to_input(weight_step[rows] / bias_step[rows].unsqueeze(1), secret.input_map)
    return Reconstruction(inputs, declared=individual_rows(inputs, levels=secret.input_map.levels),
                          meta={"rows": rows}, info={"num_rows": len(bias)})
