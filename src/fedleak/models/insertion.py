"""Insert a module (a defense such as Dropout or a variational bottleneck, an attacker's imprint layer) at a point
of any model, named by the dotted module path of its anchor.

- The anchor's parent is an ``nn.Sequential`` (every fedleak registry model; ``"block1"`` of cnn, ``"layer1"`` of
  resnet18, ``"blocks.0"`` of vit_small, ``"classifier"``): the module becomes a sibling child right before or
  after it, and no other state-dict key changes.
- Any other parent (a plain attribute ``self.fc``, a ``ModuleList``, a ``ModuleDict``, a nested block): the anchor
  is replaced on its parent (``setattr``) by a :class:`Spliced` sequence of the module and the anchor, which keeps
  the anchor under its own name: inserting ``cvb`` after ``head.fc`` makes ``head.fc`` run
  ``head.fc.fc`` then ``head.fc.cvb``. The forward code that called ``self.fc`` now calls both.
- :func:`insert_before_input` runs a module on the model input before the model's own forward (a forward
  pre-hook on the model), as a child of the model, so the model's own state-dict keys are unchanged.
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn


class Spliced(nn.Sequential):
    """A module at a path of a model with inserted modules before or after it (see the module docstring)."""


def insert_module(model: nn.Module, name: str, module: nn.Module, *, after: str | None = None,
                  before: str | None = None) -> nn.Module:
    """Insert ``module`` as ``name`` right after (or before) the submodule at dotted path ``after``/``before``.

    The model is changed in place and returned.
    Example: ``insert_module(model, "dropout", nn.Dropout(0.25), after="block1")``.
    """
    if (after is None) == (before is None):
        raise ValueError("give exactly one of after= or before=")
    anchor = after if after is not None else before
    if not anchor:
        raise ValueError("the insertion point must name a submodule; use insert_before_input for the model input")
    if not name or "." in name:
        raise ValueError(f"cannot add a module named {name!r}: a name is one non-empty part, without dots")
    parent_path, _, child = anchor.rpartition(".")
    try:
        parent = model.get_submodule(parent_path)
    except AttributeError:
        raise ValueError(f"model has no submodule {parent_path!r} (insertion point {anchor!r})") from None
    if child not in parent._modules:
        valid = ", ".join(parent._modules) or "none"
        raise ValueError(f"no child {child!r} at {parent_path or 'the top level'}; children there: {valid}")
    target = parent._modules[child]
    if isinstance(target, Spliced):  # already spliced: add to its ends
        parent, child = target, next(iter(target._modules)) if before is not None else list(target._modules)[-1]
    elif not isinstance(parent, nn.Sequential):
        spliced = Spliced(OrderedDict([(child, target)]))
        setattr(parent, child, spliced)
        parent = spliced
    if name in parent._modules:
        raise ValueError(f"cannot add a child named {name!r} at {anchor!r}: the name is taken")
    children = list(parent._modules.items())
    parent._modules.clear()
    for key, value in children:
        if key == child and before is not None:
            parent.add_module(name, module)
        parent.add_module(key, value)
        if key == child and after is not None:
            parent.add_module(name, module)
    return model


class RunFirst:
    """A model's forward pre-hook running its child ``name`` on the model input (found by name on the model it is
    called with, so a deep copy of the model runs its own copy of the child)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, model: nn.Module, args: tuple) -> tuple:
        if not args:
            raise ValueError(f"{self.name} reads the model input, but the model was called without a positional one")
        return (getattr(model, self.name)(args[0]), *args[1:])


def insert_before_input(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Add ``module`` as child ``name`` of ``model`` and run it on the model input before the model's forward: the
    first child of an ``nn.Sequential`` model, a forward pre-hook on any other (:class:`RunFirst`)."""
    if isinstance(model, nn.Sequential) and len(model):
        return insert_module(model, name, module, before=next(iter(model._modules)))
    if not name or "." in name or name in model._modules or hasattr(model, name):
        raise ValueError(f"cannot add a module named {name!r} to {type(model).__name__}: the name is taken or "
                         "not one part (an existing child, attribute or method)")
    model.add_module(name, module)
    model.register_forward_pre_hook(RunFirst(name))
    return model
