"""One map of a model: its layers in the order one forward pass runs them, with kind, shapes and parameters.

:func:`trace` runs a single forward pass with hooks on any ``nn.Module`` and returns an :class:`Anatomy`, from
which attacks, defenses and detectors read "the first convolution", "the last linear layer" or "the leaves
before layer X" the same way. Order is the order of each module's first call, not its registration order, so a
model that defines its head before its body, or calls one module twice, is read right.

A *layer* of the anatomy is a module that ran and is a leaf (no children), an attention layer, or a module that
owns parameters directly (e.g. a learned position embedding beside its child embedding table). The linear maps
inside an attention layer are layers of their own as well; an attention layer nested in another is not counted
again as attention. Tracing leaves the model as it found it: train/eval flags, every plain attribute a forward
assigns (the draws of :mod:`fedleak.models.stochastic` modules) and the torch RNG state are restored.

The *steps* of the anatomy (:class:`Step`) add what a ``forward`` does outside modules: the same pass runs under
a ``__torch_function__`` mode (:mod:`fedleak.models.dataflow`) that records every torch call made in a
container's own code (``F.relu(x)``, ``x.relu()``, ``F.relu6``, ``F.gelu``, ``out + identity``,
``torch.flatten``) and which steps' outputs each step reads, so "is conv1 followed by a ReLU" is answered from
what runs, functional activations included. It is a run, not a symbolic trace, so data-dependent control flow
is fine (the branch taken on the example is what is recorded). Should a model refuse to run under the mode, the
anatomy falls back to its modules alone and says why in ``functional_note``.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn
from torch.nn.modules import activation as _activation
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

from fedleak.models.attention import Attention
from fedleak.models.dataflow import INPUT, Dataflow, Step, activation_name, tensors as _tensors

KINDS = ("conv", "linear", "norm", "attention", "embedding", "activation", "other")
NORMS = {_BatchNorm: "batch", nn.GroupNorm: "group", nn.LayerNorm: "layer", _InstanceNorm: "instance"}


@dataclass(frozen=True)
class Layer:
    """One traced layer: dotted ``name`` in the model, ``kind`` (one of :data:`KINDS`) and ``subkind`` (for norms:
    "batch", "group", "layer" or "instance"), the class name ``type``, the ``input_shape`` and ``output_shape`` of
    its first call without the batch dimension (dimension 0; ``None`` where no tensor), the dotted names of the
    ``parameters`` it owns (all under an attention layer, else its own), ``calls`` in the traced forward, and
    ``leaf`` (no child modules). ``module`` is the traced model's own submodule."""

    name: str
    kind: str
    subkind: str | None
    type: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    parameters: tuple[str, ...]
    calls: int
    leaf: bool
    module: nn.Module = field(repr=False, compare=False)


@dataclass(frozen=True)
class Anatomy:
    """The layers of one model in execution order (``executed``), traced on inputs of ``input_shape``;
    ``shapes`` maps every module that ran (blocks too) to its first call's (input, output) shapes."""

    model: str
    input_shape: tuple[int, ...]
    executed: tuple[Layer, ...]
    shapes: Mapping[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = field(repr=False)
    steps: tuple[Step, ...] = field(default=(), repr=False)
    functional_note: str = ""

    def layers(self, kind: str | None = None, *, subkind: str | None = None) -> list[Layer]:
        """The layers of ``kind`` (and ``subkind``), every layer when ``kind`` is None, in execution order."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown layer kind {kind!r}; kinds: {', '.join(KINDS)}")
        return [layer for layer in self.executed
                if (kind is None or layer.kind == kind) and (subkind is None or layer.subkind == subkind)]

    def first(self, kind: str, *, subkind: str | None = None) -> Layer:
        """The first layer of ``kind`` to run; a ValueError when the model has none."""
        return self._one(kind, subkind, 0)

    def last(self, kind: str, *, subkind: str | None = None) -> Layer:
        """The last layer of ``kind`` to run; a ValueError when the model has none."""
        return self._one(kind, subkind, -1)

    def _one(self, kind: str, subkind: str | None, index: int) -> Layer:
        found = self.layers(kind, subkind=subkind)
        if not found:
            what = f"{subkind} {kind}" if subkind else kind
            raise ValueError(f"{self.model} runs no {what} layer in its forward pass")
        return found[index]

    def layer(self, name: str, kind: str | None = None) -> Layer:
        """The layer ``name``; with ``kind``, a ValueError unless it is of that kind."""
        for layer in self.layers(kind):
            if layer.name == name:
                return layer
        what = f"{kind} layer" if kind else "layer"
        names = ", ".join(layer.name for layer in self.layers(kind)) or "none"
        raise ValueError(f"{self.model} runs no {what} {name!r}; its {what}s: {names}")

    def pick(self, kind: str, name: str | None = None, *, last: bool = False) -> Layer:
        """Layer ``name`` of ``kind``, or by default the first (``last=True``: the last) of that kind."""
        if name is None:
            return self.last(kind) if last else self.first(kind)
        return self.layer(name, kind)

    def before(self, name: str) -> list[Layer]:
        """The leaf layers that first ran before layer ``name``, in execution order."""
        index = self._index(name)
        return [layer for layer in self.executed[:index] if layer.leaf]

    def after(self, name: str) -> list[Layer]:
        """Every layer that first ran after layer ``name``, in execution order."""
        return list(self.executed[self._index(name) + 1:])

    def _index(self, name: str) -> int:
        self.layer(name)  # a clear error for an unknown name
        return next(i for i, layer in enumerate(self.executed) if layer.name == name)

    def feature_shape(self, name: str, side: str = "output") -> tuple[int, ...]:
        """Shape (no batch dimension) of the ``side`` ("input" or "output") of module ``name`` (any module that
        ran, a block of layers too) at its first call."""
        if side not in ("input", "output"):
            raise ValueError(f"side must be 'input' or 'output', got {side!r}")
        if name not in self.shapes:
            raise ValueError(f"{self.model} calls no module {name!r} in its forward pass")
        shape = self.shapes[name][side == "output"]
        if shape is None:
            raise ValueError(f"the {side} of module {name!r} is not a tensor")
        return shape

    def output_layer(self) -> Layer:
        """The last linear layer to run: the classification layer whose gradient reveals labels."""
        return self.last("linear")

    # --- the steps: modules and functional calls, with what each reads ---

    def step(self, name: str) -> Step:
        """The step ``name`` (a module path, or ``owner:function#k`` for a functional call)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise ValueError(f"{self.model} runs no step {name!r}")

    def steps_before(self, name: str) -> list[Step]:
        """Every step that ran before step ``name`` first ran, in execution order; for a layer inside an attention
        layer (not a step of its own), the steps before that attention layer."""
        names = [step.name for step in self.steps]
        if name not in names and name not in self.shapes:
            raise ValueError(f"{self.model} runs no step {name!r}")
        path = name
        while path not in names and path:
            path = path.rpartition(".")[0]
        if path not in names:
            raise ValueError(f"{self.model} runs no step {name!r}")
        return list(self.steps[:names.index(path)])

    def readers(self, name: str) -> list[Step]:
        """The steps that read the output of step ``name`` (``"input"``: the model input)."""
        return [step for step in self.steps if name in step.reads]

    def activations(self) -> list[Step]:
        """Every activation in execution order: activation modules and functional calls (``F.relu``,
        ``x.relu()``, ``F.gelu`` ...); ``step.function`` names it ("relu", "relu6", "gelu", ...)."""
        return [step for step in self.steps if step.kind == "activation"]

    def activation_after(self, name: str) -> Step | None:
        """The activation that alone reads the output of step ``name``; ``None`` when its output goes anywhere
        else as well (a norm, a residual add, a second reader)."""
        readers = self.readers(name)
        return readers[0] if len(readers) == 1 and readers[0].kind == "activation" else None

    def producer(self, step: Step) -> Step | None:
        """The module step whose output ``step`` alone reads (e.g. the convolution under ``F.relu(conv(x))``), or
        ``None`` when it reads several steps, the model input, or a functional call's output."""
        if len(step.reads) != 1 or step.reads[0] == INPUT:
            return None
        source = self.step(step.reads[0])
        return source if source.layer is not None else None


def classify(module: nn.Module) -> tuple[str, str | None]:
    """``(kind, subkind)`` of a module (see :data:`KINDS`); an attention layer is fedleak's :class:`Attention`,
    an ``nn.MultiheadAttention`` or any module whose class name contains "Attention"."""
    if isinstance(module, (Attention, nn.MultiheadAttention)) or "Attention" in type(module).__name__:
        return "attention", None
    if isinstance(module, _ConvNd):
        return "conv", None
    if isinstance(module, nn.Linear):
        return "linear", None
    for base, subkind in NORMS.items():
        if isinstance(module, base):
            return "norm", subkind
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding", None
    if type(module).__module__ == _activation.__name__:
        return "activation", None
    return "other", None


def example_input(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A batch of one zero input of ``input_shape`` (default ``model.input_shape``, recorded by
    :func:`fedleak.models.build_model`) on the model's device: token ids when the model embeds tokens."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        raise ValueError(f"cannot trace {type(model).__name__}: its input shape is unknown; give input_shape "
                         "(no batch dimension) or build the model with fedleak.models.build_model, which records "
                         "model.input_shape")
    if not isinstance(input_shape, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dimension, got {input_shape!r}")
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    tokens = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())
    return torch.zeros((1, *input_shape), dtype=torch.long if tokens else torch.float32, device=device)


def trace(model: nn.Module, example: torch.Tensor | None = None, *,
          input_shape: tuple[int, ...] | None = None) -> Anatomy:
    """The anatomy of ``model`` from one forward pass (eval mode, no gradients) on ``example`` (a batch), or
    without one on :func:`example_input` of ``input_shape`` (default ``model.input_shape``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace needs an nn.Module, got {type(model).__name__}")
    if example is None:
        example = example_input(model, input_shape)
    elif not isinstance(example, torch.Tensor) or example.dim() < 1:
        raise ValueError("the example input must be a batch: a tensor with a leading batch dimension")
    modules = dict(model.named_modules())
    attention = {n for n, m in modules.items() if classify(m)[0] == "attention"}
    nested = {n for n in attention if any(a != n and (a == "" or n.startswith(a + ".")) for a in attention)}
    units = {n: m for n, m in modules.items() if _is_leaf(m) or (n in attention and n not in nested)
             or any(True for _ in m.parameters(recurse=False))}
    order: list[str] = []
    calls = dict.fromkeys(modules, 0)
    inputs: dict[str, tuple[int, ...] | None] = {}
    outputs: dict[str, tuple[int, ...] | None] = {}

    opaque = {n for n, m in units.items() if _is_leaf(m) or (n in attention and n not in nested)}
    flow = Dataflow(opaque=opaque, tracked=set(units))

    def run(record: bool) -> None:
        order.clear()
        inputs.clear()
        outputs.clear()
        calls.update(dict.fromkeys(modules, 0))
        flow.reset(example)
        with _untouched(model), ExitStack() as handles:
            for name, module in modules.items():
                handles.callback(module.register_forward_pre_hook(before_call(name), with_kwargs=True).remove)
                handles.callback(module.register_forward_hook(after_call(name)).remove)
            model.eval()
            with torch.no_grad(), (flow if record else _nothing()):
                model(example)

    def before_call(name):
        def hook(_module, args, kwargs):
            if not calls[name]:
                order.append(name)
                inputs[name] = _shape(args, kwargs)
            calls[name] += 1
            flow.enter(name, args, kwargs)
        return hook

    def after_call(name):
        def hook(_module, _args, output):
            outputs.setdefault(name, _shape(output))
            flow.leave(name, output)
        return hook

    note = ""
    try:
        run(record=True)
    except Exception as error:
        try:
            run(record=False)
        except Exception as plain_error:
            raise ValueError(f"tracing {type(model).__name__} on an input of shape {tuple(example.shape)} "
                             f"({example.dtype}) failed: {plain_error}") from plain_error
        note = (f"functional calls not traced ({type(error).__name__}: {error}); activations, adds and pooling "
                "written in forward code are not seen")  # the module steps of the plain run are kept
    layers = []
    for name in (n for n in order if n in units):
        module = units[name]
        kind, subkind = classify(module)
        if kind == "attention" and name in nested:
            kind = "other"
        owned = module.named_parameters(recurse=kind == "attention")
        layers.append(Layer(name, kind, subkind, type(module).__name__, inputs[name], outputs.get(name),
                            tuple(f"{name}.{p}" if name else p for p, _ in owned), calls[name],
                            _is_leaf(module), module))
    by_name = {layer.name: layer for layer in layers}
    steps = []
    for record in flow.records():
        layer = by_name.get(record.name)
        if layer is not None:
            function = activation_name(layer.module) if layer.kind == "activation" else None
            steps.append(Step(record.name, layer.kind, function, tuple(record.reads), record.owner, layer))
        elif record.function is not None:
            steps.append(Step(record.name, record.kind, record.function, tuple(record.reads), record.owner))
    shapes = {name: (inputs[name], outputs.get(name)) for name in order}
    shape = tuple(example.shape[1:])
    return Anatomy(type(model).__name__, shape, tuple(layers), shapes, tuple(steps), note)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _is_leaf(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def _shape(*values: Any) -> tuple[int, ...] | None:
    tensor = next((t for v in values for t in _tensors(v)), None)
    return None if tensor is None else tuple(tensor.shape[1:])


_KEPT = frozenset(("_parameters", "_buffers", "_modules"))


@contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Put back, on exit, every plain attribute the traced forward assigned on any module (the train/eval flags,
    a random module's ``last_draw``) and the torch RNG states it advanced."""
    saved = [(module, dict(vars(module))) for module in model.modules()]
    devices = sorted({t.device.index or 0 for t in [*model.parameters(), *model.buffers()] if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            for module, before in saved:
                state = vars(module)
                for key in [k for k in state if k not in before and k not in _KEPT]:
                    del state[key]
                for key, value in before.items():
                    if key not in _KEPT and state.get(key) is not value:
                        state[key] = value
