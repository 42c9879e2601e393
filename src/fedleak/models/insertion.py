"""Insert a module (a defense such as Dropout or a variational bottleneck) at a named point of a model.

Every fedleak model is an ``nn.Sequential`` of named children (see :mod:`fedleak.models`), so an insertion point
is the dotted path of a child of some ``nn.Sequential``: ``"block1"`` (cnn), ``"layer1"`` (resnet18),
``"blocks.0"`` (vit_small: the first transformer block), ``"classifier"`` (the output layer of every model).
"""
from __future__ import annotations

import torch.nn as nn


def insert_module(model: nn.Module, name: str, module: nn.Module, *, after: str | None = None,
                  before: str | None = None) -> nn.Module:
    """Insert ``module`` as child ``name`` right after (or before) the child at dotted path ``after``/``before``.

    The child's parent must be an ``nn.Sequential``; the model is changed in place and returned.
    Example: ``insert_module(model, "dropout", nn.Dropout(0.25), after="block1")``.
    """
    if (after is None) == (before is None):
        raise ValueError("give exactly one of after= or before=")
    anchor = after if after is not None else before
    parent_path, _, child = anchor.rpartition(".")
    try:
        parent = model.get_submodule(parent_path)
    except AttributeError:
        raise ValueError(f"model has no submodule {parent_path!r} (insertion point {anchor!r})") from None
    if not isinstance(parent, nn.Sequential):
        raise ValueError(f"cannot insert at {anchor!r}: its parent is a {type(parent).__name__}, not nn.Sequential")
    if child not in parent._modules:
        valid = ", ".join(parent._modules)
        raise ValueError(f"no child {child!r} at {parent_path or 'the top level'}; children there: {valid}")
    if name in parent._modules or "." in name:
        raise ValueError(f"cannot add a child named {name!r} at {parent_path or 'the top level'}")
    children = list(parent._modules.items())
    parent._modules.clear()
    for key, value in children:
        if key == child and before is not None:
            parent.add_module(name, module)
        parent.add_module(key, value)
        if key == child and after is not None:
            parent.add_module(name, module)
    return model
