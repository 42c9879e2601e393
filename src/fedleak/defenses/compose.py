"""A combination of client defenses written as a list, e.g. ``dropout,dp:sigma=1e-3,prune:p=0.9,cvb``
(paper 001 §5.3 ablates every combination of Dropout, DP, GP and one privacy module).

Grammar: defenses separated by commas; each is a registered name optionally followed by ``:key=value`` pairs
(``dp:sigma=1e-3:clip=20``); values are read as int, then float, true/false/none, else kept as text; lists of module paths
use ``+`` (``dropout:at=block1.relu+block2.relu``). Valid names are those of :data:`fedleak.defenses.DEFENSES`.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch.nn as nn

from fedleak.defenses import DEFENSES
from fedleak.registry import Choice, parse_options
from fedleak.defenses.defended import Defended
from fedleak.fl.client import ClientMod
from fedleak.fl.training import GradientFn


DefenseSpec = Choice  # one defense by registered name with its options (the registered function's defaults otherwise)


def _parse_one(text: str) -> DefenseSpec:
    name, *pairs = [part.strip() for part in text.split(":")]
    return DefenseSpec(name, parse_options(pairs, f"defense {text!r}"))


def parse_defenses(defenses: str | Sequence[str | DefenseSpec] | None) -> list[DefenseSpec]:
    """Parse ``"dropout,dp:sigma=1e-3,prune,cvb"`` (or a list of such items or :class:`DefenseSpec`) and check
    every name and parameter; ``None``, ``""`` and ``"none"`` mean no defense."""
    if defenses is None or (isinstance(defenses, str) and defenses.strip().lower() in ("", "none")):
        return []
    items = defenses.split(",") if isinstance(defenses, str) else list(defenses)
    specs = [item if isinstance(item, DefenseSpec) else _parse_one(item) for item in items]
    seen = set()
    for spec in specs:
        DEFENSES.check_options(spec.name, spec.options)  # unknown name or option: error listing the valid ones
        if spec.name in seen:
            raise ValueError(f"defense {spec.name!r} is listed twice")
        seen.add(spec.name)
    return specs


def defend(model: nn.Module, defenses: str | Sequence[str | DefenseSpec] | None, *, model_name: str,
           input_shape: tuple[int, ...]) -> Defended:
    """Apply ``defenses`` to a copy of ``model`` (built by ``build_model(model_name, input_shape, ...)``): the
    defended client's model, ``gradient_fn`` and mods for :class:`fedleak.fl.Client`, and what it discloses.
    Dropout, PRECODE and CVB are modules inserted in the model copy (on the model's device), DP-SGD is the
    ``gradient_fn`` and gradient pruning a client mod. Placement per model: :mod:`fedleak.defenses.dropout` and
    :mod:`fedleak.defenses.bottleneck`."""
    specs = parse_defenses(defenses)
    target = Defended(copy.deepcopy(model), model_name, tuple(input_shape), names=tuple(s.name for s in specs))
    for spec in specs:
        target = DEFENSES.build(spec.name, target, **spec.options)
    return target


def apply_defenses(model: nn.Module, defenses: str | Sequence[str | DefenseSpec] | None, *, model_name: str,
                   input_shape: tuple[int, ...]) -> tuple[nn.Module, GradientFn, tuple[ClientMod, ...]]:
    """:func:`defend`'s ``(defended_model, gradient_fn, mods)``."""
    target = defend(model, defenses, model_name=model_name, input_shape=input_shape)
    return target.model, target.gradient_fn, target.mods
