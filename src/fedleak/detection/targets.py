"""Find the layers malicious servers manipulate, in any ``nn.Module`` (Wang & Li §5.2, App. A.1).

The targets are the first convolution, the first and last fully-connected layers, up to three batch-norm layers
and the first and last attention layers. "First" and "last" follow the order in which one forward pass calls the
modules, not the order they were registered in, so a model that defines its head before its body is still read
right. An attention layer is an ``nn.MultiheadAttention`` or a module whose class name contains "Attention"
(modules nested inside an attention layer are not counted again).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


@dataclass(frozen=True)
class Target:
    """One monitored layer: ``label`` as in Table 1 (``conv[0]``, ``linear[-1]``, ``batchnorm[2]``,
    ``attention[0]``), ``module`` its dotted name in the model, ``kind`` "parameters" or "activation"."""

    label: str
    module: str
    kind: str


def is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def call_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Dotted names of the modules in the order a forward pass on ``example`` first calls them."""
    order: list[str] = []
    seen: set[str] = set()

    def hook_for(name: str):
        def hook(module, args):
            if name not in seen:
                seen.add(name)
                order.append(name)
        return hook

    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return order


def find_targets(model: nn.Module, example: torch.Tensor, *, max_batchnorms: int = 3) -> list[Target]:
    """The monitored layers of ``model`` (§5.2), found by one forward pass on ``example`` (a small batch)."""
    modules = dict(model.named_modules())
    order = call_order(model, example)
    attentions = [n for n in order if is_attention(modules[n])]
    attentions = [n for n in attentions if not any(n.startswith(a + ".") for a in attentions)]
    convs = [n for n in order if isinstance(modules[n], _ConvNd)]
    linears = [n for n in order if isinstance(modules[n], nn.Linear)]
    norms = [n for n in order if isinstance(modules[n], _BatchNorm)][:max_batchnorms]
    targets = []
    if convs:
        targets.append(Target("conv[0]", convs[0], "parameters"))
    if linears:
        targets.append(Target("linear[0]", linears[0], "parameters"))
        if len(linears) > 1:
            targets.append(Target("linear[-1]", linears[-1], "parameters"))
    targets += [Target(f"batchnorm[{i}]", name, "activation") for i, name in enumerate(norms)]
    if attentions:
        targets.append(Target("attention[0]", attentions[0], "parameters"))
        if len(attentions) > 1:
            targets.append(Target("attention[-1]", attentions[-1], "parameters"))
    return targets
