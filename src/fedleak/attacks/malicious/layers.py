"""Finding the layers a manipulation rewrites.

fedleak models are ``nn.Sequential`` s of named blocks (see :mod:`fedleak.models`), so the order in which
``named_modules()`` lists the leaf modules is the order the forward pass runs them.
"""
from __future__ import annotations

import torch.nn as nn


def linear_names(model: nn.Module) -> list[str]:
    """Dotted names of the model's ``nn.Linear`` layers, in forward order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def linear_layer(model: nn.Module, name: str | None = None, *, last: bool = False) -> tuple[str, nn.Linear]:
    """The linear layer ``name`` (default: the first, or the last with ``last=True``) as ``(name, module)``."""
    names = linear_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no fully connected (nn.Linear) layer")
    if name is None:
        name = names[-1] if last else names[0]
    if name not in names:
        raise ValueError(f"no linear layer {name!r}; linear layers: {', '.join(names)}")
    module = model.get_submodule(name)
    if module.bias is None:
        raise ValueError(f"linear layer {name!r} has no bias; analytic extraction needs one (paper 002 Eq. 5)")
    return name, module


def leaves_before(model: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    """The leaf modules (no children) that run before module ``name``, in forward order."""
    leaves = []
    for path, module in model.named_modules():
        if path == name:
            return leaves
        if path and not any(True for _ in module.children()):
            leaves.append((path, module))
    raise ValueError(f"model has no module {name!r}")
