"""Carrying the model input unaltered to a chosen fully connected layer (Boenisch et al., paper 002, §7 and App. B),
through the convolutions (:mod:`conv_forwarding`) and fully connected layers (:mod:`fc_forwarding`) before it.

The result is the :class:`InputMap` the attacker keeps: where each input feature arrives and with what scale.
The layers before the target may be ``Conv2d`` (stride 1, "same" padding), ``Linear``, each followed by a
ReLU or ReLU6 (a module, or ``F.relu``/``x.relu()``/``F.relu6`` in the forward code: the traced steps of
:mod:`fedleak.models.anatomy`), and flattening (``nn.Flatten``, ``x.flatten(1)``, ``x.view(B, -1)``); anything
else (pooling, normalisation, a residual add, another activation) is refused with a :class:`NotApplicable` naming
it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.checks import CheckedConfig, NotApplicable, levels_field, seed_field
from fedleak.attacks.analytic import InputMap, LayerSecret, extraction_layer
from fedleak.attacks.malicious.conv_forwarding import forward_conv
from fedleak.attacks.malicious.fc_forwarding import forward_linear
from fedleak.models.anatomy import Anatomy, Layer, trace
from fedleak.models.dataflow import Step

PASSING = ("relu", "relu6")  # pass the forwarded values in [0, 1] (ReLU6: up to 6) unchanged, zero the negatives
RELU6_LIMIT = 6.0


def check_relu_follows(anatomy: Anatomy, name: str) -> Step:
    """The ReLU (or ReLU6) that alone reads the output of layer ``name``; a :class:`NotApplicable` saying what
    reads it otherwise."""
    activation = anatomy.activation_after(name)
    if activation is None or activation.function not in PASSING:
        readers = anatomy.readers(name)
        what = ", ".join(f"{r.name} ({r.layer.type if r.layer is not None else r.function})"
                         for r in readers) or "nothing"
        raise NotApplicable(f"cannot forward the input through {name!r}: its output must go through a ReLU alone, "
                            f"but is read by {what}")
    return activation


def _skip(step: Step) -> bool:
    """Steps that change nothing the forwarding needs: the activations checked with their layer, reshapes,
    identities and containers that own parameters (their leaves are steps of their own)."""
    if step.layer is not None:
        return isinstance(step.layer.module, (nn.Identity, nn.ReLU, nn.ReLU6)) or not step.layer.leaf
    return step.kind == "reshape" or (step.kind == "activation" and step.function in PASSING)


@torch.no_grad()
def forward_input(anatomy: Anatomy, layer: str, *, generator: torch.Generator, levels: int | None = 255) -> InputMap:
    """Rewrite the layers that run before ``layer`` in the traced model in place so that they forward the input
    (of the shape it was traced on) to it; returns the map. A flatten is an ``nn.Flatten`` or, done in the
    forward code, seen in the traced input shape of a linear layer."""
    input_shape = anatomy.input_shape
    if anatomy.functional_note:
        raise NotApplicable(f"cannot forward the input: {anatomy.functional_note}")
    steps = [step for step in anatomy.steps_before(layer) if not _skip(step)]
    convs = [i for i, step in enumerate(steps) if step.layer is not None and isinstance(step.layer.module, nn.Conv2d)]
    spatial = len(input_shape) == 3
    channels = torch.arange(input_shape[0]) if spatial else None
    positions = None if spatial else torch.arange(math.prod(input_shape))
    scale = torch.ones(input_shape[0] if spatial else math.prod(input_shape))
    width = math.prod(input_shape)  # features of the representation so far

    def check_reads(name: str, linear: nn.Linear) -> None:
        if linear.in_features != width:
            raise NotApplicable(f"linear layer {name!r} reads {linear.in_features} features but receives {width} "
                             f"for inputs of shape {input_shape}")

    def flatten() -> None:
        nonlocal positions, scale, spatial
        pixels = input_shape[1] * input_shape[2]
        positions = (channels.unsqueeze(1) * pixels + torch.arange(pixels)).flatten()
        scale = scale.repeat_interleave(pixels)
        spatial = False

    def flattened_before(linear: Layer) -> None:
        if spatial and linear.input_shape is not None and len(linear.input_shape) == 1:
            flatten()
        if spatial:
            raise NotApplicable(f"linear layer {linear.name!r} reads an input that was not flattened")

    for index, step in enumerate(steps):
        if step.layer is None:
            raise NotApplicable(f"cannot forward the input through {step.name} ({step.kind} {step.function} in the "
                                f"forward code of {step.owner or 'the model'}); supported: Conv2d and Linear, each "
                                "followed by ReLU, and flattening")
        leaf = step.layer
        name, module = leaf.name, leaf.module
        if isinstance(module, nn.Conv2d):
            if not spatial:
                raise NotApplicable(f"convolution {name!r} comes after the input was flattened")
            check_relu_follows(anatomy, name)
            channels = forward_conv(name, module, channels, last=index == convs[-1], generator=generator).cpu()
            width = module.out_channels * input_shape[1] * input_shape[2]
        elif isinstance(module, nn.Flatten):
            if spatial:
                flatten()
        elif isinstance(module, nn.Linear):
            flattened_before(leaf)
            check_reads(name, module)
            activation = check_relu_follows(anatomy, name)
            positions, scale = forward_linear(name, module, positions, scale, generator=generator)
            positions, scale = positions.cpu(), scale.cpu()
            if activation.function == "relu6" and float(scale.max()) > RELU6_LIMIT:
                raise NotApplicable(f"the ReLU6 after {name!r} would clip the forwarded input, scaled by up to "
                                    f"{float(scale.max()):.2f} > 6 by the forwarding layers")
            width = module.out_features
        else:
            raise NotApplicable(f"cannot forward the input through {name!r} ({type(module).__name__}); supported: "
                                "Conv2d and Linear (each followed by ReLU), Flatten")
    target = anatomy.layer(layer)
    if spatial and (target.input_shape is None or len(target.input_shape) != 1):
        raise NotApplicable(f"the input reaches {layer!r} unflattened")
    flattened_before(target)
    check_reads(layer, target.module)
    return InputMap(input_shape, positions, scale, levels)


@dataclass
class InputForwardingConfig(CheckedConfig, what="input forwarding"):
    """Forward the input to fully connected layer ``layer`` (default: the first) of a model for inputs of
    ``input_shape``; ``levels`` is the data's quantisation the attacker assumes (255: 8-bit images)."""

    input_shape: tuple[int, ...]
    layer: str | None = None
    levels: int | None = levels_field()
    seed: int = seed_field()


def input_forwarding(model: nn.Module, config: InputForwardingConfig) -> tuple[nn.Module, LayerSecret]:
    """A copy of ``model`` whose layers before ``config.layer`` forward the input (§7, App. B), and the secret.
    Extraction is then the passive attack at that layer (:func:`fedleak.attacks.analytic.extract_at_layer`)."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=config.input_shape)
    name, _ = extraction_layer(anatomy, config.layer)
    generator = torch.Generator().manual_seed(config.seed)
    input_map = forward_input(anatomy, name, generator=generator, levels=config.levels)
    return model, LayerSecret(name, input_map)
