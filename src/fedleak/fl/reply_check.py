"""What a server checks in every client reply before it aggregates anything: one pure core that ``fl.Server`` and
Flower's :class:`fedleak.flower.AuditStrategy` both call.

A reply comes from a party the server does not control, so it is data to check, not to trust: the update's entries
must be exactly those of the model the client was sent (no missing or extra key), of the same shape and dtype,
finite, of an L2 norm below a bound (an update scaled by 1e30 would own the average, as in the model-replacement
attack of Bagdasaryan et al. 2020, §4.2), and its ``num_examples`` (the client's FedAvg weight, McMahan et al.
2017, Alg. 1) a whole number from 1 to what the server configured. A reply that fails is dropped from the round
with its reason; the round goes on with the rest (Flower's engines count it as a failure).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping

import torch

from fedleak.checks import check_number

DEFAULT_MAX_EXAMPLES = 10**6  # per reply; a client with more examples per round must be allowed explicitly
DEFAULT_MAX_UPDATE_NORM = 1e6  # L2 norm of a whole update; honest updates are many orders of magnitude smaller


class ReplyRefused(ValueError):
    """A client's reply the server drops before aggregation; the message says what is wrong with it."""


@dataclass(frozen=True)
class ReplyLimits:
    """What a server accepts of a reply: ``max_examples`` bounds the ``num_examples`` weight (``fl.Server`` also
    bounds it by what its FL config lets a client train on per round) and ``max_update_norm`` the L2 norm of the
    whole update (``None``: no bound)."""

    max_examples: int = DEFAULT_MAX_EXAMPLES
    max_update_norm: float | None = DEFAULT_MAX_UPDATE_NORM

    def __post_init__(self):
        check_number("max_examples", self.max_examples, low=1, integer=True)
        if self.max_update_norm is not None:
            check_number("max_update_norm", self.max_update_norm, low=0, low_open=True)


def check_examples(value, high: int) -> int:
    """``value`` as an int if it is a whole number from 1 to ``high``, else :class:`ReplyRefused` saying why."""
    whole = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
             and value == int(value))
    if not whole or not 1 <= value <= high:
        raise ReplyRefused(f"num-examples must be a whole number from 1 to {high}, got {value!r}")
    return int(value)


def check_entries(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str) -> None:
    """The entries of ``tensors`` are exactly those of ``expected`` (no missing or extra key), each a tensor of
    the expected shape and dtype; otherwise :class:`ReplyRefused` naming the first offending entries."""
    if not isinstance(tensors, Mapping):
        raise ReplyRefused(f"{what} is a {type(tensors).__name__}, not a mapping of named tensors")
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"extra {_names(extra)}"] if extra else [])
        raise ReplyRefused(f"{what} has other entries than the model it was sent: {'; '.join(parts)}")
    for key, reference in expected.items():
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            raise ReplyRefused(f"{what}: {key!r} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(reference.shape):
            raise ReplyRefused(f"{what}: {key!r} has shape {tuple(value.shape)}, the model sent has "
                               f"{tuple(reference.shape)}")
        if value.dtype != reference.dtype:
            raise ReplyRefused(f"{what}: {key!r} has dtype {value.dtype}, the model sent has {reference.dtype}")


def update_norm(update: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The L2 norm of a whole update (every floating-point entry), in float64 so that a huge update does not
    overflow to Inf before it is compared."""
    norms = [t.detach().double().norm() for t in update.values() if t.is_floating_point()]
    return torch.stack(norms).norm() if norms else torch.zeros((), dtype=torch.float64)


def check_values(update: Mapping[str, torch.Tensor], limits: ReplyLimits, what: str) -> None:
    """Every floating-point entry of ``update`` (a gradient or a model difference) is finite and the whole update's
    L2 norm is within ``limits.max_update_norm``; otherwise :class:`ReplyRefused`. One host transfer."""
    floating = {k: t for k, t in update.items() if t.is_floating_point()}
    if not floating:
        return
    finite = torch.stack([torch.isfinite(t.detach()).all().cpu() for t in floating.values()])
    norm = update_norm(floating).cpu()
    flags = finite.tolist()
    if not all(flags):
        key = next(k for k, ok in zip(floating, flags) if not ok)
        bad = int((~torch.isfinite(floating[key].detach())).sum())
        raise ReplyRefused(f"{what}: {key!r} holds {bad} NaN/Inf entries of {floating[key].numel()}")
    if limits.max_update_norm is not None and not float(norm) <= limits.max_update_norm:
        raise ReplyRefused(f"{what} has L2 norm {float(norm):.3g}, above the bound {limits.max_update_norm:g} "
                           "(ReplyLimits.max_update_norm)")


def check_update(update: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], num_examples,
                 limits: ReplyLimits = ReplyLimits(), *, max_examples: int | None = None,
                 what: str = "the update") -> int:
    """Check one client's ``update`` (entry name -> tensor: a gradient or a model difference) against the entries
    the server ``expected`` (those of the model the client was sent) and its ``num_examples`` against
    ``limits`` and ``max_examples`` (what the server configured, when it knows); returns the number of examples,
    or raises :class:`ReplyRefused` with the reason."""
    check_entries(update, expected, what)
    high = limits.max_examples if max_examples is None else min(limits.max_examples, max_examples)
    examples = check_examples(num_examples, high)
    check_values(update, limits, what)
    return examples


def _names(keys: list[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(repr(k) for k in keys[:shown]) + more
