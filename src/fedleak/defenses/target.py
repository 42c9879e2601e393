"""What a client defense changes: the model it trains, how it computes a gradient, and the mods around it.

Each defense in :data:`fedleak.defenses.DEFENSES` is a function ``(target: Defended, **params) -> Defended``:
Dropout, PRECODE and CVB insert a module into ``target.model``; DP-SGD replaces ``target.gradient_fn``;
gradient pruning appends a client mod.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.defenses.stochastic import stochastic_modules
from fedleak.fl.client import ClientMod
from fedleak.fl.training import GradientFn, batch_gradients


@dataclass
class Defended:
    """A client's defended training recipe for one model (``model_name`` as in :func:`fedleak.models.build_model`,
    ``input_shape`` without the batch dimension)."""

    model: nn.Module
    model_name: str
    input_shape: tuple[int, ...]
    gradient_fn: GradientFn = batch_gradients
    mods: tuple[ClientMod, ...] = ()


def feature_shape(model: nn.Module, path: str, input_shape: tuple[int, ...], side: str = "output") -> tuple[int, ...]:
    """Shape (no batch dimension) of the ``side`` ("input" or "output") of submodule ``path`` when the model
    reads one input of ``input_shape``; found with a hook on one forward in eval mode without gradients."""
    if side not in ("input", "output"):
        raise ValueError(f"side must be 'input' or 'output', got {side!r}")
    try:
        module = model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"model has no submodule {path!r}") from None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    tokens = any(isinstance(m, nn.Embedding) for m in model.modules())
    x = torch.zeros((1, *input_shape), dtype=torch.long if tokens else torch.float32, device=device)
    seen: list[tuple[int, ...]] = []

    def record(_module, inputs, output):
        seen.append(tuple((inputs[0] if side == "input" else output).shape[1:]))

    handle = module.register_forward_hook(record)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        model.train(was_training)
        for _, random_module in stochastic_modules(model):  # forget the probe's draws
            random_module.last_draw = None
            for attr in random_module.transient:
                setattr(random_module, attr, None)
    if not seen:
        raise ValueError(f"submodule {path!r} is not called in the model's forward")
    return seen[0]
