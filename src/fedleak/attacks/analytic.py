"""Analytic extraction of inputs from the gradient of a fully connected layer (Boenisch et al., paper 002, §5).

For a layer ``y = ReLU(W x + b)`` the gradient of one input is ``dL/dW_i = dL/db_i * x`` (Eq. 3-4), so every row
``i`` with a non-zero bias gradient gives ``x = dL/dW_i / dL/db_i`` (Eq. 5). For a batch, row ``i`` holds the
``dL/dy``-weighted overlay of the inputs that activate neuron ``i`` (Eq. 6): it is an individual input exactly when
one input of the batch activates it (§5.2). The same ratio holds for a FedSGD gradient (the mean over the batch)
and for a FedAvg delta of one plain SGD step (``-lr * gradient``); after several steps or with Adam it does not.

A manipulation that forwards the input to a later layer (trap weights on a CNN, text embeddings) keeps an
:class:`InputMap` as its secret: which input features of the extraction layer carry which input features of the
model, and with what scale. Extraction never sees the client's data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from fedleak.models.anatomy import Anatomy

from fedleak.attacks.base import Reconstruction
from fedleak.checks import NotApplicable, check_finite

NEGLIGIBLE = 1e-10  # bias gradients this small relative to the largest are round-off


@dataclass(frozen=True)
class InputMap:
    """Where the model's input sits among the extraction layer's inputs.

    Feature ``j`` of the flattened model input (of ``input_shape``) arrives as ``scale[j] * x[j]`` at input
    feature ``positions[j]`` of the extraction layer. ``levels`` is what the server knows of the data's
    quantisation (255 for 8-bit images in [0, 1]); ``None`` for real-valued inputs.
    """

    input_shape: tuple[int, ...]
    positions: torch.Tensor
    scale: torch.Tensor
    levels: int | None = 255

    def __post_init__(self):
        size = math.prod(self.input_shape)
        if self.positions.shape != (size,) or self.scale.shape != (size,):
            raise ValueError(f"an InputMap for inputs {self.input_shape} needs {size} positions and scales, got "
                             f"{tuple(self.positions.shape)} and {tuple(self.scale.shape)}")


def identity_map(input_shape: tuple[int, ...], *, levels: int | None = 255, device=None) -> InputMap:
    """The map of a layer that reads the flattened model input directly (the FC-NN's first layer)."""
    size = math.prod(input_shape)
    return InputMap(tuple(input_shape), torch.arange(size, device=device), torch.ones(size, device=device), levels)


@dataclass(frozen=True)
class LayerSecret:
    """What the server keeps to extract inputs: the extraction layer's name and the map of its inputs."""

    layer: str
    input_map: InputMap


def extraction_layer(anatomy: Anatomy, name: str | None = None, *, last: bool = False) -> tuple[str, nn.Linear]:
    """The linear layer ``name`` (default: the first to run, or the last with ``last=True``) of a traced model as
    ``(name, module)``; Eq. 5 divides by its bias gradient, so it must have a bias."""
    if name is None and not anatomy.layers("linear"):
        raise NotApplicable(f"analytic extraction reads a fully connected layer's gradient (paper 002 Eq. 5); "
                            f"{anatomy.model} runs no linear layer")
    layer = anatomy.pick("linear", name, last=last)
    if layer.module.bias is None:
        raise NotApplicable(f"linear layer {layer.name!r} has no bias; analytic extraction needs one (paper 002 Eq. 5)")
    return layer.name, layer.module


def layer_gradients(update: Mapping[str, torch.Tensor], layer: str, *,
                    device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias gradients (or deltas) of ``layer`` in an update, on ``device``; NaN/Inf in either is
    refused (:class:`fedleak.checks.NonFiniteUpdate`)."""
    keys = (f"{layer}.weight", f"{layer}.bias")
    missing = [k for k in keys if k not in update]
    if missing:
        layers = sorted({k.rsplit(".", 1)[0] for k in update if k.endswith(".bias")})
        raise KeyError(f"update has no {' or '.join(missing)}; layers with a bias: {', '.join(layers) or 'none'}")
    weight, bias = (update[k] if device is None else update[k].to(device) for k in keys)
    check_finite(dict(zip(keys, (weight, bias))), "received update")
    if weight.dim() != 2 or bias.shape != weight.shape[:1]:
        raise ValueError(f"{layer} is not a fully connected layer: weight {tuple(weight.shape)}, "
                         f"bias {tuple(bias.shape)}")
    return weight, bias


def active_rows(bias_grad: torch.Tensor) -> torch.Tensor:
    """Rows whose bias gradient is non-zero, ignoring values below ``NEGLIGIBLE`` times the largest: those are
    float round-off (e.g. in the difference of two updates), not inputs."""
    magnitude = bias_grad.abs()
    return torch.nonzero(magnitude > NEGLIGIBLE * magnitude.max()).squeeze(1)


def extract_linear(weight_grad: torch.Tensor, bias_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper 002 Eq. 5 on every row at once: ``(inputs (K, D), rows (K,))`` for the K active rows."""
    if weight_grad.dim() != 2 or bias_grad.shape != weight_grad.shape[:1]:
        raise ValueError(f"need a (N, D) weight gradient and a (N,) bias gradient, got "
                         f"{tuple(weight_grad.shape)} and {tuple(bias_grad.shape)}")
    rows = active_rows(bias_grad)
    return weight_grad[rows] / bias_grad[rows].unsqueeze(1), rows


def individual_rows(inputs: torch.Tensor, *, levels: int | None, tolerance: float = 1e-4) -> torch.Tensor:
    """The attacker's test, without ground truth, that a candidate is one input and not an overlay.

    With quantised data (``levels``, e.g. 255 for 8-bit images) a single input lies on the grid ``k / levels`` in
    [0, 1] up to float error, while an overlay of different inputs falls off it. Without quantisation, a
    candidate counts when another row reproduces it within ``tolerance`` of the data scale: rows of the same
    single input agree, overlays do not (their weights ``dL/dy`` differ from row to row).
    """
    flat = inputs.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    if len(flat) == 0:
        return finite
    if levels is not None:
        grid = flat * levels
        on_grid = (grid - grid.round()).abs().amax(dim=1) <= 1e-2
        in_range = (flat.amin(dim=1) >= -tolerance) & (flat.amax(dim=1) <= 1 + tolerance)
        return finite & on_grid & in_range
    safe = torch.where(finite.unsqueeze(1), flat, torch.zeros_like(flat))
    scale = safe.norm(dim=1)[finite].median().clamp_min(torch.finfo(flat.dtype).tiny) if finite.any() else 1.0
    close = torch.cdist(safe, safe, compute_mode="donot_use_mm_for_euclid_dist") <= tolerance * scale
    close.fill_diagonal_(False)
    return finite & close.any(dim=1)


def map_to_input(features: torch.Tensor, input_map: InputMap) -> torch.Tensor:
    """Extracted extraction-layer inputs (K, F) back to model inputs (K, *input_shape)."""
    positions = input_map.positions.to(features.device)
    scale = input_map.scale.to(features.device, features.dtype)
    if len(positions) and int(positions.max()) >= features.shape[1]:
        raise ValueError(f"input map points at feature {int(positions.max())} but the layer has {features.shape[1]}")
    return (features[:, positions] / scale).reshape(len(features), *input_map.input_shape)


def extract_at_layer(update: Mapping[str, torch.Tensor], secret: LayerSecret, *, device=None) -> Reconstruction:
    """Passive or manipulated-model extraction: Eq. 5 at ``secret.layer``, mapped back to the model input.

    One candidate per active row (``meta["rows"]``, ``info["num_rows"]`` the layer's neuron count N); a candidate
    is declared when the attacker's own test (:func:`individual_rows`) says it holds one input, not an overlay."""
    weight, bias = layer_gradients(update, secret.layer, device=device)
    features, rows = extract_linear(weight, bias)
    inputs = map_to_input(features, secret.input_map)
    return Reconstruction(inputs, declared=individual_rows(inputs, levels=secret.input_map.levels),
                          meta={"rows": rows}, info={"num_rows": len(bias)})
