"""What a model's ``forward`` does between its modules, recorded while it runs (for :func:`fedleak.models.anatomy.
trace`).

Ordinary models apply activations, residual adds, pooling and flattening in their ``forward`` code
(``F.relu(self.bn1(self.conv1(x)))``, ``out + identity``, ``x.flatten(1)``) instead of as modules. A
:class:`Dataflow` is a ``__torch_function__`` mode that sees those calls, plus the module hooks of the trace, and
keeps one record per *step*: each module call that is not inside a leaf module (or an attention layer), and each
torch call made in a container's own code, with the steps whose output tensors it reads (tensors are followed by
identity, in-place ops included). The model input is the step ``"input"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

if TYPE_CHECKING:
    from fedleak.models.anatomy import Layer

INPUT = "input"

# Functional calls by what they do (names without leading "__" and trailing "_": add_, __iadd__ -> add).
ACTIVATIONS = frozenset((
    "relu", "relu6", "hardtanh", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "elu", "selu", "celu",
    "softplus", "hardswish", "hardsigmoid", "mish", "prelu", "rrelu", "glu", "logsigmoid", "softsign",
    "tanhshrink", "threshold"))
ADDS = frozenset(("add", "iadd", "radd"))
POOLS = frozenset(f"{kind}_pool{d}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max", "lp")
                  for d in (1, 2, 3))
REDUCTIONS = frozenset(("mean", "sum", "amax", "amin", "logsumexp"))
# Reshapes that keep the order of the features, and copies and casts that keep their values (x.float(), x.to(dev)).
RESHAPES = frozenset(("flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze", "unflatten", "view_as",
                      "reshape_as", "to", "float", "double", "cpu", "cuda", "detach", "clone", "type_as"))
FUNCTION_KINDS = {**dict.fromkeys(ACTIVATIONS, "activation"), **dict.fromkeys(ADDS, "add"),
                  **dict.fromkeys(POOLS, "pool"), **dict.fromkeys(REDUCTIONS, "reduce"),
                  **dict.fromkeys(RESHAPES, "reshape")}

_MODULE_ACTIVATIONS = {"LeakyReLU": "leaky_relu", "LogSigmoid": "logsigmoid", "RReLU": "rrelu"}


def activation_name(module: nn.Module) -> str:
    """The functional name of an activation module: ``nn.ReLU6`` -> "relu6", ``nn.LeakyReLU`` -> "leaky_relu"."""
    name = type(module).__name__
    return _MODULE_ACTIVATIONS.get(name, name.lower())


def function_name(func: Any) -> str:
    """``add_``, ``__iadd__`` and ``add`` are all "add"; ``F.relu``, ``torch.relu`` and ``Tensor.relu_`` "relu"."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "__get__":  # a tensor property (x.T, x.mT): its own name
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
    return name.rstrip("_") or name


@dataclass(frozen=True)
class Step:
    """One step of a traced forward: a module (``layer`` set; ``kind`` its layer kind) or a functional call made
    in the code of module ``owner`` (``layer`` None; ``kind`` "activation", "add", "pool", "reduce", "reshape" (an
    order-keeping reshape, or a value-keeping copy or cast) or "other", ``name`` ``owner:function#k``).
    ``function`` names an activation ("relu", "relu6", "gelu" ...) or the functional call; ``reads`` the steps
    whose outputs it reads (over all calls of a module; ``"input"``: the model input)."""

    name: str
    kind: str
    function: str | None
    reads: tuple[str, ...]
    owner: str
    layer: Layer | None = field(default=None, repr=False, compare=False)


@dataclass
class _Record:
    name: str
    owner: str
    reads: list[str]
    kind: str | None = None
    function: str | None = None


class Dataflow(TorchFunctionMode):
    """The recorder: enter/leave are called by the trace's module hooks; ``opaque`` modules (leaves, attention
    layers) hide their inner calls; ``tracked`` modules (the anatomy's layers) are steps."""

    def __init__(self, *, opaque: set[str], tracked: set[str]):
        super().__init__()
        self.opaque, self.tracked = opaque, tracked
        self.reset(None)

    def reset(self, example: torch.Tensor | None) -> None:
        self._producer: dict[int, str] = {}
        self._alive: list[torch.Tensor] = []  # keeps every followed tensor alive, so that no id is reused
        self._records: dict[str, _Record] = {}
        self._owners: list[str] = []
        self._depth = 0
        self._counts: dict[tuple[str, str], int] = {}
        if example is not None:
            self._mark(example, INPUT)

    def records(self) -> list[_Record]:
        return list(self._records.values())

    def _mark(self, value: Any, name: str) -> None:
        for tensor in tensors(value):
            self._producer[id(tensor)] = name
            self._alive.append(tensor)

    def _reads(self, *values: Any) -> list[str]:
        reads: list[str] = []
        for tensor in (t for v in values for t in tensors(v)):
            source = self._producer.get(id(tensor))
            if source is not None and source not in reads:
                reads.append(source)
        return reads

    def enter(self, name: str, args: tuple, kwargs: dict) -> None:
        if self._depth == 0 and name in self.tracked:
            record = self._records.setdefault(name, _Record(name, self._owners[-1] if self._owners else "", []))
            record.reads += [r for r in self._reads(args, kwargs) if r not in record.reads]
        self._owners.append(name)
        if name in self.opaque:
            self._depth += 1

    def leave(self, name: str, output: Any) -> None:
        if self._owners and self._owners[-1] == name:
            self._owners.pop()
        if name in self.opaque:
            self._depth -= 1
        if self._depth == 0 and name in self.tracked:
            self._mark(output, name)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if self._depth == 0 and next(tensors(output), None) is not None:
            reads = self._reads(args, kwargs)
            if reads:
                function = function_name(func)
                owner = self._owners[-1] if self._owners else ""
                count = self._counts[owner, function] = self._counts.get((owner, function), 0) + 1
                name = f"{owner or 'model'}:{function}#{count}"
                self._records[name] = _Record(name, owner, reads, FUNCTION_KINDS.get(function, "other"), function)
                self._mark(output, name)
        return output


def tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``value`` (a tensor, or tuples, lists and dicts of them), in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
