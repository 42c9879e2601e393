"""The audit's checks of its inputs before any work, and the digest that names them.

:func:`check_model` builds nothing itself: it is handed the model and data and answers with a one-line
:class:`InputError` naming the fix, or nothing. It checks the weights and buffers (finite; batch-norm running
variances >= 0: a negative variance is physically impossible and makes every output NaN), one forward pass on one
batch (the model reads the data's input shape and dtype; the output is ``(batch, num_classes)`` and finite), and
that the data can feed the clients the options ask for. :func:`inputs_digest` hashes the model source (the file of
a user's model, or the registry spec), the weights file's bytes and the data's tensors: every cell of an audit is
keyed by it, so a changed input is a new run and a rerun of the same inputs resumes.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

from fedleak.data import TensorDataset

PROBE_BATCH = 4


class InputError(ValueError):
    """The model, its weights or the data cannot be audited as given; the message names the fix."""


def check_weights(model: nn.Module, what: str) -> None:
    """Every parameter and buffer finite, every batch-norm running variance >= 0."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise InputError(f"{what}: {name} holds {bad} NaN/Inf value(s); every output would be NaN. Retrain or "
                             "re-export the weights")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise InputError(f"{what}: {name} has negative batch-norm variances (min {float(tensor.min()):.3g}), "
                             "which no training produces; re-export the weights")


def check_model(model: nn.Module, train: TensorDataset, *, what: str, device: str = "cpu") -> None:
    """One forward pass of ``model`` on the first :data:`PROBE_BATCH` training samples (eval mode, no gradient,
    running statistics untouched): a one-line :class:`InputError` unless it reads them and answers with one
    finite row of ``num_classes`` outputs per sample."""
    check_weights(model, what)
    info = train.info
    x = train.inputs(slice(0, PROBE_BATCH)).to(device)
    described = f"inputs of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')})"
    was_training = model.training
    try:
        with torch.no_grad():
            output = model.eval()(x)
    except Exception as error:  # the user's forward on our data: any failure is an input mismatch to report
        channels = f"; the data has {info.input_shape[0]} channel(s)" if info.kind == "image" else ""
        fix = (" (check the model's input channels and size, or pick them with --size)" if info.kind == "image"
               else " (a text model takes int64 token ids)")
        message = " ".join(str(error).split())[:300]
        raise InputError(f"{what} cannot read the data: a forward pass on {described} failed with "
                         f"{type(error).__name__}: {message}{channels}{fix}") from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise InputError(f"{what} returned a {type(output).__name__}; an audited model's forward returns one "
                         "tensor of class scores (logits)")
    per_position = tuple(train.y.shape[1:])  # next-token labels (N, n): a language model scores every position
    expected = (len(x), *per_position, info.num_classes)
    if tuple(output.shape[:-1]) != expected[:-1]:
        rows = "one row" if not per_position else f"one row per position ({per_position[0]})"
        raise InputError(f"{what} maps {described} to outputs of shape {tuple(output.shape)}; it must give {rows} "
                         f"of {info.num_classes} class scores per sample, shape {expected}")
    width = output.shape[-1]
    if width != info.num_classes:
        too = "few" if width < info.num_classes else "many"
        raise InputError(f"{what} gives {width} outputs per sample but the data has {info.num_classes} classes "
                         f"(too {too}); make its last layer nn.Linear(..., {info.num_classes}) (a factory taking "
                         f"num_classes is called with num_classes={info.num_classes})")
    if not bool(torch.isfinite(output).all()):
        raise InputError(f"{what} gives NaN/Inf outputs on {described}; check its weights and its forward")


def check_clients(train: TensorDataset, *, batch_size: int, victims: int, secure_aggregation: int,
                  utility_clients: int, utility_samples: int | None = None) -> None:
    """The data can give every client of the options its own batch: an error naming the option otherwise."""
    samples = len(train)
    for option, clients, per_client, available in (
            ("--victims", victims, batch_size, samples),
            ("--secure-aggregation", secure_aggregation, batch_size, samples),
            ("--utility-clients", utility_clients, 1, min(samples, utility_samples or samples))):
        if clients * per_client > available:
            raise InputError(f"{option} {clients}: {clients} client(s) x {per_client} sample(s) exceed the "
                             f"{available} training samples it draws from; use at most {available // per_client}")


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror or error}") from None


def model_source(spec: str, registered: bool) -> bytes:
    """What defines the model of ``spec`` besides its options: the registry spec itself, or the bytes of the
    file the user's factory lives in."""
    if registered:
        return f"registry:{spec}".encode()
    module = spec.split(":")[0]
    if module.endswith(".py"):
        return spec.encode() + _file_bytes(Path(module))
    found = importlib.util.find_spec(module)
    origin = getattr(found, "origin", None)
    return spec.encode() + (_file_bytes(Path(origin)) if origin and Path(origin).is_file() else b"")


def inputs_digest(*, spec: str, registered: bool, weights: str | None, train: TensorDataset,
                  test: TensorDataset) -> str:
    """SHA-256 (first 16 hex digits) of the model source, the weights file and the data's tensors."""
    digest = hashlib.sha256(model_source(spec, registered))
    digest.update(b"weights:" + (_file_bytes(Path(weights)) if weights else b""))
    for split in (train, test):
        for tensor in (split.x, split.y):
            digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
            digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
