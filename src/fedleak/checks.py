"""The explicit "does not apply" error (:class:`NotApplicable`), and checks of numbers and tensors that come from
outside: numeric options and names of defenses, attacks, detectors and experiments (finite and in range, or known;
declared once per config field with :func:`checked` or :func:`choice_field` and run by :class:`CheckedConfig`),
received updates (finite) and device names (present on this machine), each failing with a message naming the bad
value."""
from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, field, fields
from functools import partial
from typing import Any, Callable, Iterable, Mapping

import torch


class NotApplicable(ValueError):
    """An attack or defense that does not apply to this model or data, with the real reason (what the model has
    that the method cannot handle, and where possible the change that would make it apply). A ``ValueError``, so
    callers that treat a ``ValueError`` of ``prepare`` or of a defense as "does not apply" keep working."""


class NonFiniteUpdate(ValueError):
    """A received update (gradient or model difference) holding NaN or Inf; the message names the first bad
    tensor. An attack refuses it instead of returning a result computed from it."""


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False):
    """``value`` if it is a finite number (an int when ``integer``) in the interval from ``low`` to ``high``
    (bounds excluded when ``*_open``); otherwise a :class:`ValueError` naming ``name``, the range and the value."""
    kind = "an integer" if integer else "a finite number"
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Integral if integer else numbers.Real)
          and math.isfinite(value) and (low is None or (value > low if low_open else value >= low))
          and (high is None or (value < high if high_open else value <= high)))
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ValueError(f"{name} must be {kind}{' ' + bounds if bounds else ''}, got {value!r}")
    return value


def checked(default: Any = MISSING, *, label: str | None = None, optional: bool = False, **bounds) -> Any:
    """A config's dataclass field (``default``; none: a required field) whose value :func:`check_fields` checks with
    :func:`check_number` and ``bounds`` (``low``, ``high``, ``low_open``, ``high_open``, ``integer``), naming it
    ``label`` (default: the field's name); ``optional``: ``None`` passes too."""
    return _declared(default, partial(check_number, **bounds), label, optional)


def choice_field(valid: Iterable[str], default: Any = MISSING, *, label: str | None = None,
                 many: bool = False) -> Any:
    """A field that holds one of the names ``valid`` (``many``: a sequence of them), else :func:`check_known`'s
    error ``"unknown {what} {label} 'name'; valid: ..."`` (by :func:`check_fields`)."""
    valid = tuple(valid)

    def check(name: str, value) -> None:
        check_known(value if many else (value,), valid, f"unknown {name}")

    return _declared(default, check, label, False)


def _declared(default: Any, check: Callable[[str, Any], Any], label: str | None, optional: bool) -> Any:
    return field(default=default, metadata={"check": (label, optional, check)})


def check_fields(config, what: str) -> None:
    """The check of each field of the dataclass ``config`` declared with :func:`checked`, :func:`choice_field` or a
    named rule, in their order, naming it ``"{what} {label}"`` (``what`` empty: ``label``)."""
    for item in fields(config):
        if "check" in item.metadata:
            label, optional, check = item.metadata["check"]
            value = getattr(config, item.name)
            if not (optional and value is None):
                check(" ".join(filter(None, (what, label or item.name))), value)


class CheckedConfig:
    """Base of a config dataclass whose fields declare their checks: it validates itself after ``__init__`` with
    :func:`check_fields`, naming its fields after the class keyword ``what`` (``class QbiConfig(CheckedConfig,
    what="QBI")``; default: the bare field names). A subclass with checks across fields extends ``__post_init__``
    and calls ``super().__post_init__()`` first; one that gives an inherited checked field another default declares
    its check again (``runs: int = count_field(3)``), since a dataclass field redeclared replaces the inherited one."""

    what = ""

    def __init_subclass__(cls, what: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if what is not None:
            cls.what = what

    def __post_init__(self):
        check_fields(self, self.what)


def number_field(default: Any = MISSING) -> Any:
    """A field that holds a finite number (:func:`checked`)."""
    return checked(default)


def weight_field(default: Any = MISSING) -> Any:
    """A field that holds a finite number >= 0 (a weight, a tolerance; :func:`checked`)."""
    return checked(default, low=0)


def share_field(default: Any = MISSING) -> Any:
    """A field that holds a number strictly between 0 and 1 (a threshold on a share; :func:`checked`)."""
    return checked(default, low=0, high=1, low_open=True, high_open=True)


def positive_field(default: Any = MISSING) -> Any:
    """A field that holds a finite number > 0 (a scale, a standard deviation; :func:`checked`)."""
    return checked(default, low=0, low_open=True)


def count_field(default: Any = MISSING) -> Any:
    """A field that holds an int >= 1 (a size, a budget; :func:`checked`)."""
    return checked(default, low=1, integer=True)


def index_field(default: Any = MISSING) -> Any:
    """A field that holds an int >= 0 (a class, a feature; :func:`checked`)."""
    return checked(default, low=0, integer=True)


def seed_field(default: int = 0) -> Any:
    """A config's ``seed`` field: an int >= 0, checked by :func:`check_fields`."""
    return index_field(default)


def levels_field(default: int | None = 255) -> Any:
    """A config's ``levels`` field, the data's quantisation an attack assumes: ``None`` (real-valued data) or an
    int >= 1 (the check of :func:`check_levels`, by :func:`check_fields`)."""
    return checked(default, low=1, integer=True, optional=True)


def check_levels(what: str, levels) -> None:
    """The quantisation ``levels`` an attack assumes: ``None`` (real-valued data) or an int >= 1."""
    if levels is not None:
        check_number(f"{what} levels", levels, low=1, integer=True)


def check_known(values: Iterable[str], valid: Iterable[str], unknown: str) -> None:
    """Each of ``values`` one of ``valid`` (names), else a ValueError ``"{unknown} {the first other!r}; valid: ..."``
    listing the valid ones."""
    valid = tuple(valid)
    others = [value for value in values if value not in valid]
    if others:
        raise ValueError(f"{unknown} {others[0]!r}; valid: {', '.join(valid)}")


def check_finite(tensors: Mapping[str, torch.Tensor] | Iterable[torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteUpdate` naming the first tensor of ``tensors`` (a mapping or a sequence) that holds
    NaN or Inf, and how many of its entries do. One host transfer for all tensors."""
    items = list(tensors.items()) if isinstance(tensors, Mapping) else list(enumerate(tensors))
    floating = [(k, t) for k, t in items if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())]
    if not floating:
        return
    flags = torch.stack([torch.isfinite(t.detach()).all().cpu() for _, t in floating]).tolist()
    for (key, tensor), ok in zip(floating, flags):
        if not ok:
            bad = int((~torch.isfinite(tensor.detach())).sum())
            raise NonFiniteUpdate(f"{what}: {key!r} holds {bad} NaN/Inf entries of {tensor.numel()}; "
                                  "a non-finite update is refused, not attacked")


def check_device(text: str) -> str:
    """``text`` if it names a torch device present on this machine (``cpu``; ``cuda``/``cuda:N`` where CUDA has
    N+1 devices; ``mps`` where available), else a ValueError saying why."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{text!r}: CUDA is not available on this machine; use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"{text!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{text!r}: MPS is not available on this machine; use cpu")
    elif device.type != "cpu":
        raise ValueError(f"{text!r}: fedleak runs on cpu, cuda or mps, not {device.type}")
    return text
