"""What ``fedleak audit`` is pointed at: a model and data given as text (``--model``, ``--data``), resolved to an
``nn.Module`` and two :class:`fedleak.data.TensorDataset` splits.

A model is a registry name with options (``resnet18:norm=group``) or the import path of the user's own factory or
``nn.Module`` class (``package.module:factory``, or ``path/to/file.py:factory``, with ``:key=value`` options after
it), called with those of ``input_shape`` and ``num_classes`` it names, from the data. Data is a registry dataset
with options (``bundled``, ``cifar10:size=32``), a folder of images (one sub-folder per class) or the import path of
a torch ``Dataset`` (or of a function returning one; with a ``split`` parameter it is asked for "train" and "test",
otherwise the last fifth of the items is the test split).

A Hugging Face model is ``hf:ARCH[:f=v,...][:lora=rR]`` (:func:`fedleak.models.huggingface.hf_options`). A causal
language model (an ``hf`` model whose head is ``lm``) predicts the next token, so it reads token windows with the
next token as label: pointed at the word-level ``fortunes`` (43 category labels), the audit reads ``fortunes_lm``
instead (:func:`language_model_data`, :data:`LM_SEQ_LEN` tokens per window) and says so in its report.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from fedleak.data import DATASETS, DatasetInfo, TensorDataset, load_dataset
from fedleak.models import MODELS, build_model
from fedleak.registry import parse_options

IMPORT_PATH = re.compile(r"^(?P<module>[^:]+?(\.py)?):(?P<attr>[A-Za-z_][A-Za-z_0-9.]*)(?P<options>(:[^:]*)*)$")
TEST_SHARE = 0.2  # of an imported dataset without a split parameter
MAX_ITEMS = 20000  # items read from an imported dataset (an audit needs few)
LM_SEQ_LEN = 8  # tokens per window of a language model's data: batch x 8 stays below a 128-wide model (DAGER's bound)
LM_DATA = {"fortunes": "fortunes_lm"}  # word-level data -> its next-token form for a causal language model


def import_object(path: str, what: str) -> tuple[Any, dict[str, Any]]:
    """The object named by ``module:attr[:key=value...]`` (``module`` a dotted import path or a ``.py`` file) and
    the options after it."""
    match = IMPORT_PATH.match(path)
    if match is None:
        raise ValueError(f"{what} {path!r} is neither a registered name nor an import path package.module:name")
    module_name, attr = match["module"], match["attr"]
    options = parse_options([p for p in match["options"].split(":") if p], what)
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise FileNotFoundError(f"{what} {path!r}: file {file} not found")
        spec = importlib.util.spec_from_file_location(f"fedleak_user_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's file: any failure is an input error to name, not a traceback
            raise ValueError(f"{what} {path!r}: importing {file} raised {_described(error)}") from None
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ValueError(f"{what} {path!r}: cannot import {module_name!r} ({error}); put its folder on "
                             f"PYTHONPATH or give the file, path/to/{module_name.split('.')[-1]}.py:{attr}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{what} {path!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    return target, options


def _described(error: BaseException) -> str:
    """``Type: message (file line N)`` of an exception raised in user code, on one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}{where}"


def _registered(text: str, registry) -> tuple[str, dict[str, Any]] | None:
    """(name, options) when ``text`` is ``name[:key=value...]`` of a name in ``registry``, else ``None``."""
    name, *parts = text.split(":")
    return (name, parse_options(parts, name)) if name in registry else None


@dataclass
class ResolvedModel:
    """The model (on CPU, as built), the registry name the defenses place their modules by (the import path for a
    user's model, which no defense knows), and whether it came from the registry."""

    model: nn.Module
    name: str
    registered: bool


def hf_spec(spec: str) -> dict | None:
    """The options of an ``hf:...`` model spec (a one-line error for a malformed one), ``None`` for another spec."""
    if spec.split(":")[0].strip() != "hf":
        return None
    from fedleak.models.huggingface import hf_options

    return hf_options(spec)


def causal_language_model(spec: str) -> bool:
    """Whether ``spec`` is an ``hf`` model with a language-model head (``head=lm``, or ``auto`` on a decoder)."""
    options = hf_spec(spec)
    if options is None:
        return False
    from fedleak.models.huggingface import ENCODERS

    head = options.get("head", "auto")
    return head == "lm" or (head == "auto" and options.get("path") is None
                            and options.get("arch", "gpt2") not in ENCODERS)


def language_model_data(model: str, data: str) -> tuple[str, str]:
    """(data spec to read, note for the report): a causal language model pointed at word-level data it cannot
    learn from (:data:`LM_DATA`) reads the data's next-token form of :data:`LM_SEQ_LEN` tokens; otherwise ``data``
    unchanged and no note."""
    name, *parts = data.split(":")
    if not causal_language_model(model) or name not in LM_DATA:
        return data, ""
    if parts:
        raise ValueError(f"--data {data!r}: a language model reads next-token windows; give --data "
                         f"{LM_DATA[name]}[:seq_len=N] instead of options of {name}")
    lm = f"{LM_DATA[name]}:seq_len={LM_SEQ_LEN}"
    return lm, (f"{model} is a causal language model (next-token labels), so the audit reads {lm} (windows of "
                f"{LM_SEQ_LEN} tokens of the fortunes, the label of each position its next token, classes = the "
                f"local tokenizer's vocabulary) instead of {data} (whole fortunes labelled by their category).")


def resolve_model(spec: str, input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None
                  ) -> ResolvedModel:
    """The model of ``spec`` for inputs of ``input_shape`` and ``num_classes`` classes (module docstring); an
    ``hf`` classifier built from a config embeds ``vocab_size`` tokens (the data's vocabulary) unless the spec
    sets ``vocab_size``."""
    options = hf_spec(spec)
    if options is not None:
        fields = options.get("config", "")
        if (vocab_size and not causal_language_model(spec) and options.get("path") is None
                and "vocab_size" not in {f.partition("=")[0].strip() for f in fields.split(",")}):
            options["config"] = ",".join(filter(None, (fields, f"vocab_size={vocab_size}")))
        return ResolvedModel(build_model("hf", input_shape, num_classes, **options), "hf", True)
    registered = _registered(spec, MODELS)
    if registered is not None:
        name, options = registered
        return ResolvedModel(build_model(name, input_shape, num_classes, **options), name, True)
    factory, options = import_object(spec, "model")
    if not callable(factory):
        raise ValueError(f"model {spec!r} is not a function or nn.Module class")
    known = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    arguments = {**{k: v for k, v in known.items() if k in parameters}, **options}
    try:
        model = factory(**arguments)
    except Exception as error:  # the user's factory: name what it raised, with what it was called
        called = ", ".join(f"{k}={v!r}" for k, v in arguments.items()) or "no arguments"
        raise ValueError(f"model {spec!r}: calling it with {called} raised {_described(error)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {spec!r} returned a {type(model).__name__}, not a torch nn.Module")
    model.input_shape, model.num_classes = tuple(input_shape), num_classes
    match = IMPORT_PATH.match(spec)
    return ResolvedModel(model, f"{match['module']}:{match['attr']}", False)


def resolve_data(spec: str, *, root: str | None = None, size: tuple[int, int] | None = None, seed: int = 0
                 ) -> tuple[TensorDataset, TensorDataset]:
    """Train and test splits of ``spec`` (module docstring); ``size`` resizes registry and folder images."""
    registered = _registered(spec, DATASETS)
    if registered is not None:
        name, options = registered
        if size is not None and "size" in DATASETS.options(name) and "size" not in options:
            options["size"] = tuple(size)
        return tuple(load_dataset(name, root=root, split=s, **options) for s in ("train", "test"))
    if Path(spec).is_dir():
        splits = ("train", "test") if (Path(spec) / "test").is_dir() else ("train",)
        loaded = [load_dataset("imagefolder", root=spec, split=s, size=tuple(size or (32, 32))) for s in splits]
        return (loaded[0], loaded[1]) if len(loaded) == 2 else holdout(loaded[0], seed)
    source, options = import_object(spec, "data")
    if isinstance(source, torch.utils.data.Dataset):
        return holdout(tensor_dataset(source, spec), seed)
    if not callable(source):
        raise ValueError(f"data {spec!r} is not a torch Dataset nor a function returning one")
    try:
        takes_split = "split" in inspect.signature(source).parameters
    except (TypeError, ValueError):
        takes_split = False
    if takes_split:
        return tuple(tensor_dataset(source(split=s, **options), spec) for s in ("train", "test"))
    return holdout(tensor_dataset(source(**options), spec), seed)


def tensor_dataset(dataset, name: str) -> TensorDataset:
    """The (input, label) items of a torch ``Dataset`` (at most :data:`MAX_ITEMS`) held in memory; the class count
    is ``dataset.classes``' length when it has one, else the largest label + 1."""
    if not isinstance(dataset, torch.utils.data.Dataset):
        raise ValueError(f"data {name!r} gave a {type(dataset).__name__}, not a torch Dataset")
    count = min(len(dataset), MAX_ITEMS)
    if count < 2:
        raise ValueError(f"data {name!r} has {count} item(s); an audit needs a training and a test split")
    inputs, labels = [], []
    for index in range(count):
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"data {name!r}: item {index} is not an (input, label) pair")
        inputs.append(torch.as_tensor(item[0]))
        labels.append(int(item[1]))
    shapes = {tuple(x.shape) for x in inputs}
    if len(shapes) != 1:
        raise ValueError(f"data {name!r}: inputs of different shapes {sorted(shapes)[:3]}; resize them to one shape")
    x, y = torch.stack(inputs), torch.tensor(labels)
    if int(y.min()) < 0:
        raise ValueError(f"data {name!r}: labels must be >= 0, got {int(y.min())}")
    classes = getattr(dataset, "classes", None)
    num_classes = len(classes) if classes is not None else int(y.max()) + 1
    if x.is_floating_point():
        x = x.float()
        dims = [0] + list(range(2, x.dim()))
        mean, std = tuple(x.mean(dim=dims).tolist()), tuple(x.std(dim=dims).tolist())
        kind = "image" if x.dim() == 4 else "vector"
    else:
        mean, std, kind = (), (), "text"
    info = DatasetInfo(name, tuple(x.shape[1:]), num_classes, mean if kind == "image" else (),
                       std if kind == "image" else (), kind=kind)
    return TensorDataset(x, y, info)


def holdout(dataset: TensorDataset, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """A seeded split of ``dataset`` into training and test (the last :data:`TEST_SHARE` of a permutation)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    cut = len(dataset) - max(1, round(TEST_SHARE * len(dataset)))
    return dataset.subset(order[:cut]), dataset.subset(order[cut:])
