"""The protocol of every random defense module, so that attacks can mimic a client's randomness.

Scheliga et al. (paper 001, §3.4, §4) attack Dropout, PRECODE and CVB by *replacing* the client's random draw
(the Dropout masks Psi_C, the reparameterisation noise eps_VB_C) with the attacker's own: the true one (WIIG),
or one optimised jointly with the dummy images (DIA, VBIA, CDIA). Every random defense module is therefore a
:class:`StochasticModule` with two attributes:

- ``override``: ``None`` (draw fresh randomness) or a tensor used *instead of* a fresh draw; its shape is the
  draw's shape for the current input batch, batch dimension first (a mask of the input's shape for Dropout,
  eps of shape ``(B, K, ...)`` for a bottleneck). It may require grad: the output is differentiable in it.
- ``last_draw``: the draw the last forward used (the client's true randomness after its training step), or
  ``None`` when the last forward used none (Dropout in eval mode).

``kind`` says what a draw is: ``"mask"`` (values in {0, 1}; DIA relaxes it to [0, 1]) or ``"noise"`` (N(0, 1)).
A forward in training mode with no override leaves a fresh draw of the right shape and distribution in
``last_draw``, which is how an attacker initialises its dummy draws.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
import torch.nn as nn

from fedleak.registry import UnknownNameError

_DRAW_ATTRIBUTES = ("override", "last_draw")


class StochasticModule(nn.Module):
    """Base class of the random defense modules; subclasses implement :meth:`fresh_draw` and ``forward``."""

    kind: str = ""
    # Whether, given one draw per sample, each sample's output (and auxiliary loss share) depends on its own input
    # and draw only, so that per-sample gradients may come from one batched pass (fedleak.fl.layerwise_gradients).
    samplewise: bool = False
    # Attributes holding tensors of the last forward; a copy (deepcopy, pickle) does not carry them.
    transient: tuple[str, ...] = ()

    def __init__(self):
        super().__init__()
        self.override: torch.Tensor | None = None
        self.last_draw: torch.Tensor | None = None

    def __setattr__(self, name: str, value) -> None:
        # Plain attributes even for an nn.Parameter: an attacker's optimised draw must not become a model parameter.
        if name in _DRAW_ATTRIBUTES or name in self.transient:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __getstate__(self) -> dict:
        state = super().__getstate__().copy()
        for name in _DRAW_ATTRIBUTES:
            if isinstance(state.get(name), torch.Tensor):
                state[name] = state[name].detach()
        for name in self.transient:
            state[name] = None
        return state

    def fresh_draw(self, like: torch.Tensor) -> torch.Tensor:
        """A new random draw of ``like``'s shape, device and dtype."""
        raise NotImplementedError

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """The override if one is set (its shape checked against ``like``'s), else a fresh draw; kept in
        ``last_draw``."""
        if self.override is not None:
            if tuple(self.override.shape) != tuple(like.shape):
                raise ValueError(
                    f"{type(self).__name__}: override of shape {tuple(self.override.shape)} does not match the "
                    f"draw of shape {tuple(like.shape)} for this input batch"
                )
            draw = self.override
        else:
            draw = self.fresh_draw(like)
        self.last_draw = draw
        return draw


def stochastic_modules(model: nn.Module) -> list[tuple[str, StochasticModule]]:
    """``(name, module)`` of every random defense module, in registration order (forward order for fedleak's
    ``nn.Sequential`` models)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, StochasticModule)]


def forget_last_forward(modules) -> None:
    """Drop what the last forward left on each of the random ``modules`` (its draw and :attr:`transient`
    tensors): after a batched or per-sample gradient pass they hold that pass's tensors, not a client's draw."""
    for module in modules:
        module.last_draw = None
        for attr in module.transient:
            setattr(module, attr, None)


def last_draws(model: nn.Module) -> dict[str, torch.Tensor]:
    """The draw each random module used in the last forward (modules that drew nothing are left out)."""
    return {name: m.last_draw for name, m in stochastic_modules(model) if m.last_draw is not None}


@contextmanager
def overridden(model: nn.Module, draws: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Use ``draws[name]`` instead of fresh randomness in the named random modules, and restore the previous
    overrides on exit. Only attribute assignment, so it works on batched tensors inside ``torch.func.vmap``.
    """
    modules = dict(stochastic_modules(model))
    unknown = sorted(set(draws) - set(modules))
    if unknown:
        valid = ", ".join(modules) or "none"
        raise UnknownNameError(f"no random defense module named {', '.join(unknown)}; the model's random modules: {valid}")
    with overriding(modules, draws):
        yield model


@contextmanager
def overriding(modules: Mapping[str, StochasticModule], draws: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """:func:`overridden` on modules found beforehand (``name -> module``, every draw's name among them), for hot
    loops that must not walk the module tree on every call."""
    previous = {name: modules[name].override for name in draws}
    try:
        for name, draw in draws.items():
            modules[name].override = draw
        yield
    finally:
        for name, old in previous.items():
            modules[name].override = old
