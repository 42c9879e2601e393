"""The order in which a model's layers run, found by tracing one forward pass with hooks.

Registration order need not be execution order (a module may be inserted anywhere), so the attacks that need
"the output layer" (label recovery) or "every layer after the bottleneck decoder" (PIG) trace a forward pass.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def executed_parameters(model: nn.Module, example: torch.Tensor) -> list[tuple[str, list[str]]]:
    """``(module name, [parameter names])`` for every module that owns parameters, in the order the modules
    first run on ``example`` (a batch of inputs). Gradients are not tracked."""
    order: list[str] = []
    handles = []
    owners = {name: module for name, module in model.named_modules()
              if any(True for _ in module.parameters(recurse=False))}
    for name, module in owners.items():
        handles.append(module.register_forward_hook(
            lambda _m, _i, _o, name=name: order.append(name) if name not in order else None))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, [f"{name}.{p}" if name else p for p, _ in owners[name].named_parameters(recurse=False)])
            for name in order]


def output_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the last ``nn.Linear`` that runs in a forward pass (the classification layer label recovery reads)."""
    modules = dict(model.named_modules())
    linears = [name for name, _ in executed_parameters(model, example) if isinstance(modules[name], nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to recover labels from")
    return linears[-1]
