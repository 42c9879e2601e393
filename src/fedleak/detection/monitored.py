"""The layers malicious servers manipulate, as the warm-up Z-score detector monitors them (Wang & Li §5.2,
App. A.1).

The targets are the first convolution, the first and last fully-connected layers, up to three batch-norm layers
and the first and last attention layers, read from the model's traced anatomy (:mod:`fedleak.models.anatomy`):
"first" and "last" follow the order in which one forward pass calls the modules, so a model that defines its head
before its body is still read right.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.models.anatomy import trace


@dataclass(frozen=True)
class Target:
    """One monitored layer: ``label`` as in Table 1 (``conv[0]``, ``linear[-1]``, ``batchnorm[2]``,
    ``attention[0]``), ``module`` its dotted name in the model, ``kind`` "parameters" or "activation"."""

    label: str
    module: str
    kind: str


def find_targets(model: nn.Module, example: torch.Tensor, *, max_batchnorms: int = 3) -> list[Target]:
    """The monitored layers of ``model`` (§5.2), found by one forward pass on ``example`` (a small batch)."""
    anatomy = trace(model, example)
    convs = anatomy.layers("conv")
    linears = anatomy.layers("linear")
    norms = anatomy.layers("norm", subkind="batch")[:max_batchnorms]
    attentions = anatomy.layers("attention")
    targets = []
    if convs:
        targets.append(Target("conv[0]", convs[0].name, "parameters"))
    if linears:
        targets.append(Target("linear[0]", linears[0].name, "parameters"))
        if len(linears) > 1:
            targets.append(Target("linear[-1]", linears[-1].name, "parameters"))
    targets += [Target(f"batchnorm[{i}]", layer.name, "activation") for i, layer in enumerate(norms)]
    if attentions:
        targets.append(Target("attention[0]", attentions[0].name, "parameters"))
        if len(attentions) > 1:
            targets.append(Target("attention[-1]", attentions[-1].name, "parameters"))
    return targets
