"""Fishing for user data: class and feature fishing on the last layer (Wen et al., ICML 2022; Wang & Li,
paper 000, App. A.1.3 Eq. 17).

*Class fishing* zeroes the classifier rows of every class but the target and gives them a large bias, so the
target logit has probability ~0 for every input: inputs of other classes then send no gradient into the body of
the network (``dL/dh = W_t p_t = 0``) while an input of the target class sends ``-W_t``. If the batch holds one
input of the target class, the whole update is that input's gradient (times 1/B).

*Feature fishing* lets the target logit follow one feature ``h_f`` of the classifier's input, ``p_t =
sigmoid(m (h_f - c))``. The server sends it twice with thresholds ``c_low < c_high``; the difference of the two
updates (:func:`fishing_bin`) holds the inputs with ``c_low < h_f < c_high``, whatever their labels, plus the
sigmoid tails of inputs near the thresholds: tiny, but Eq. 5 is scale-free and can still single them out.

Either way, the isolated input's classifier features are the target row's weight gradient over its bias gradient,
and when the model's first fully connected layer reads the raw input (the FC-NN) the input itself follows from
Eq. 5 of paper 002 there; for other models the isolated gradient is what gradient inversion takes.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from fedleak.checks import CheckedConfig, index_field, number_field
from fedleak.attacks.analytic import LayerSecret, extract_at_layer, extraction_layer, layer_gradients
from fedleak.attacks.base import Reconstruction
from fedleak.attacks.passive import input_layer
from fedleak.models.anatomy import Anatomy, trace


@dataclass
class ClassFishingConfig(CheckedConfig, what="class fishing"):
    """``target_class`` t; ``bias_multiplier`` the other classes' logit (Wen et al.'s 1000); ``input_shape``
    lets the extractor read inputs at a first layer that sees the raw input."""

    target_class: int = index_field()
    input_shape: tuple[int, ...] | None = None
    bias_multiplier: float = number_field(1000.0)


@dataclass
class FeatureFishingConfig(CheckedConfig, what="feature fishing"):
    """Fish inputs by classifier-input feature ``feature`` around ``threshold``; ``multiplier`` m sets the
    sharpness of the step; ``target_class`` is the row that carries the feature (any class works)."""

    feature: int = index_field()
    threshold: float = number_field()
    input_shape: tuple[int, ...] | None = None
    multiplier: float = number_field(1000.0)
    bias_multiplier: float = number_field(1000.0)
    target_class: int = index_field(0)


@dataclass(frozen=True)
class FishingSecret:
    """The classifier layer, the fished class row, and the input layer (``None`` unless the first fully
    connected layer reads the raw input)."""

    classifier: str
    target_class: int
    input_layer: LayerSecret | None


def _classifier(anatomy: Anatomy, target_class: int) -> tuple[str, nn.Linear]:
    name, classifier = extraction_layer(anatomy, last=True)
    if not 0 <= target_class < classifier.out_features:
        raise ValueError(f"target class {target_class} is outside the {classifier.out_features} classes of {name!r}")
    if classifier.out_features < 2:
        raise ValueError(f"fishing needs a classifier with several classes; {name!r} has one output")
    return name, classifier


def class_fishing(model: nn.Module, config: ClassFishingConfig) -> tuple[nn.Module, FishingSecret]:
    """A copy of ``model`` fishing for the class ``config.target_class`` (Eq. 17), and the secret."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=config.input_shape)
    name, classifier = _classifier(anatomy, config.target_class)
    with torch.no_grad():
        others = torch.ones(classifier.out_features, dtype=torch.bool, device=classifier.weight.device)
        others[config.target_class] = False
        classifier.weight[others] = 0.0
        classifier.bias[others] = config.bias_multiplier
    return model, FishingSecret(name, config.target_class, input_layer(anatomy, config.input_shape))


def feature_fishing(model: nn.Module, config: FeatureFishingConfig) -> tuple[nn.Module, FishingSecret]:
    """A copy of ``model`` whose target logit is ``m (h_f - c)`` above the others' (offset so that
    ``p_t = sigmoid(m (h_f - c))``), and the secret."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=config.input_shape)
    name, classifier = _classifier(anatomy, config.target_class)
    if not 0 <= config.feature < classifier.in_features:
        raise ValueError(f"feature {config.feature} is outside the {classifier.in_features} inputs of {name!r}")
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.fill_(config.bias_multiplier)
        classifier.weight[config.target_class, config.feature] = config.multiplier
        offset = config.bias_multiplier + math.log(classifier.out_features - 1)
        classifier.bias[config.target_class] = offset - config.multiplier * config.threshold
    return model, FishingSecret(name, config.target_class, input_layer(anatomy, config.input_shape))


def fishing_bin(update_low: Mapping[str, torch.Tensor],
                update_high: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The difference of the updates for thresholds ``c_low`` and ``c_high`` on the same batch: the gradient of
    the inputs whose fished feature lies between them (scale and sign do not matter to the extraction)."""
    if set(update_low) != set(update_high):
        raise ValueError("the two fishing updates hold different tensors")
    return {key: update_low[key] - update_high[key] for key in update_low}


def extract_fishing(update: Mapping[str, torch.Tensor], secret: FishingSecret, *, device=None) -> Reconstruction:
    """The fished input: Eq. 5 candidates at the input layer when the first layer reads the raw input, else the
    one point of its classifier features (NaN when nothing was isolated). ``info["features"]`` holds those
    features (d,) in both cases."""
    weight, bias = layer_gradients(update, secret.classifier, device=device)
    features = weight[secret.target_class] / bias[secret.target_class]
    if secret.input_layer is not None:
        reconstruction = extract_at_layer(update, secret.input_layer, device=device)
        reconstruction.info["features"] = features
        return reconstruction
    return Reconstruction(features.unsqueeze(0), declared=torch.isfinite(features).all().reshape(1),
                          info={"features": features})
