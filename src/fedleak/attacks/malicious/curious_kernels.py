"""Scaled identity convolution kernels (Boenisch et al. as catalogued by Wang & Li, paper 000, App. A.1.2, Fig. 4).

Every filter of every convolution before the first fully connected layer becomes an identity kernel: a single
positive constant ``c`` at the centre of one input channel (filter ``k`` reads channel ``k mod C_in``), zero bias.
The convolutions turn into pass-through layers that replicate the input's channels, scaled by ``c`` per layer,
so the fully connected layer receives ``c^L`` times the input and Eq. 5 there, divided by ``c^L``, gives it back.
Unlike :mod:`conv_forwarding` no filter is left random, which is what the filter-ratio check of paper 000 §3.2
(largest entry over the sum of the others, infinite here) detects.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.checks import NotApplicable, check_levels, check_number
from fedleak.attacks.analytic import InputMap, LayerSecret, extraction_layer
from fedleak.attacks.malicious.conv_forwarding import check_size_preserving
from fedleak.models.anatomy import trace


@dataclass
class CuriousKernelsConfig:
    """Identity kernels with centre value ``scale`` (c > 0) in every convolution before the first fully
    connected layer of a model for ``input_shape`` (C, H, W) images."""

    input_shape: tuple[int, ...]
    scale: float = 0.5
    levels: int | None = 255

    def __post_init__(self):
        check_number("curious kernels' centre value scale", self.scale, low=0, low_open=True)
        check_levels("curious kernels", self.levels)
        if len(self.input_shape) != 3:
            raise NotApplicable(f"curious kernels need image inputs (C, H, W), got {self.input_shape}")


def curious_kernels(model: nn.Module, config: CuriousKernelsConfig) -> tuple[nn.Module, LayerSecret]:
    """A copy of ``model`` whose convolutions are scaled identities, and the secret (first linear layer, map)."""
    model = copy.deepcopy(model)
    anatomy = trace(model, input_shape=config.input_shape)
    name, linear = extraction_layer(anatomy)
    channels, height, width = config.input_shape
    source = torch.arange(channels)  # the input channel each feature map holds
    gain = 1.0
    with torch.no_grad():
        if anatomy.functional_note:
            raise NotApplicable(f"cannot pass the input through the model: {anatomy.functional_note}")
        for step in anatomy.steps_before(name):
            if step.layer is None:
                if step.kind == "reshape" or (step.kind == "activation" and step.function in ("relu", "relu6")):
                    continue
                raise NotApplicable(f"cannot pass the input through {step.name} ({step.kind} {step.function} in "
                                    f"the forward code of {step.owner or 'the model'})")
            if not step.layer.leaf:
                continue
            path, module = step.name, step.layer.module
            if isinstance(module, nn.Conv2d):
                check_size_preserving(path, module)
                reads = torch.arange(module.out_channels) % module.in_channels
                centre = (module.kernel_size[0] // 2, module.kernel_size[1] // 2)
                module.weight.zero_()
                module.weight[torch.arange(module.out_channels), reads, centre[0], centre[1]] = config.scale
                module.bias.zero_()
                source, gain = source[reads], gain * config.scale
            elif not isinstance(module, (nn.ReLU, nn.ReLU6, nn.Flatten, nn.Identity)):
                raise NotApplicable(f"cannot pass the input through {path!r} ({type(module).__name__})")
    if linear.in_features != len(source) * height * width:
        raise NotApplicable(f"{name!r} reads {linear.in_features} features, not the {len(source)} x {height} x {width} "
                         "feature maps")
    first_copy = torch.stack([torch.nonzero(source == c)[0, 0] for c in range(channels)])
    positions = (first_copy.unsqueeze(1) * (height * width) + torch.arange(height * width)).flatten()
    size = math.prod(config.input_shape)
    return model, LayerSecret(name, InputMap(config.input_shape, positions, torch.full((size,), gain), config.levels))
