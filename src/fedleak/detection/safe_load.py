"""Load a model file received from the server safely (Wang & Li §3.1).

Only the safetensors format is read — never ``torch.load``, whose unpickling runs code chosen by the sender. The
file's header (keys, shapes, dtypes and declared byte ranges) is checked against the client's own architecture
before any tensor data is read, so an inserted imprint layer, a resized tensor or a file declaring more bytes than
the local architecture needs is refused with the offending names at the cost of reading the header. A model whose
values cannot be those of any trained network (NaN or Inf anywhere, a negative batch-norm running variance, a
negative batch counter) is refused too (:func:`check_model_values`): it would make every output NaN and every
detector and attack read nothing, silently.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fedleak.detection.architecture import ArchitectureReport, ArchitectureMismatch, require_matching_architecture


class UnsafeModelFile(ValueError):
    """A received file that is not a well-formed safetensors file: a pickle or ``torch.save`` archive, a directory,
    a truncated file or a malformed header. The message says which."""


class ImpossibleModel(UnsafeModelFile):
    """A model holding values no trained network has: NaN/Inf, a negative running variance or batch count. The
    message names the first offending entry."""


def check_model_values(model: nn.Module, what: str = "the model") -> None:
    """Raise :class:`ImpossibleModel` (one line, naming the entry) unless every floating-point entry of
    ``model``'s state is finite, every batch-norm ``running_var`` is >= 0 and every ``num_batches_tracked`` >= 0
    (Ioffe & Szegedy 2015, Alg. 1: a variance is a mean of squares). One host transfer for the whole model."""
    state = model.state_dict()
    norms = {name for name, module in model.named_modules() if isinstance(module, nn.modules.batchnorm._NormBase)}
    checks = []  # (entry, what is wrong when the flag is false, flag)
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        if value.is_floating_point() or value.is_complex():
            checks.append((key, "holds NaN/Inf", torch.isfinite(value.detach()).all()))
        if owner in norms and leaf in ("running_var", "num_batches_tracked") and value.numel():
            checks.append((key, "is negative (a variance or a count cannot be)", (value.detach() >= 0).all()))
    if not checks:
        return
    flags = torch.stack([flag.cpu() for _, _, flag in checks]).tolist()
    for (key, problem, _), ok in zip(checks, flags):
        if not ok:
            raise ImpossibleModel(f"{what}: {key!r} {problem}; no trained model holds such values")


_SIGNATURES = {b"PK\x03\x04": "a zip archive (the torch.save format)",
               **{b"\x80" + bytes([p]): "a Python pickle" for p in range(2, 6)}}

# safetensors dtype names (the format's spec) -> torch dtypes
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}

# A header lists key, dtype, shape and offsets per tensor: this many bytes per local tensor, plus room for metadata.
_HEADER_BYTES_PER_KEY = 1024
_HEADER_BASE_BYTES = 64 * 1024


def save_model_file(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict as safetensors (what a server sends); tied tensors are stored separately."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()}, str(path))
    return path


def load_received_model(path: str | Path, local_model: nn.Module, *, device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``local_model`` on ``device`` holding the state read from the safetensors file ``path``.

    Raises :class:`UnsafeModelFile` for a file that is not well-formed safetensors (naming what is wrong or what
    it looks like) and :class:`fedleak.detection.architecture.ArchitectureMismatch` naming every extra, missing,
    reshaped or retyped key (from the header, before reading data); :class:`ImpossibleModel` (an
    :class:`UnsafeModelFile`) for NaN/Inf anywhere, a negative running variance or batch count.
    """
    path = Path(path)
    local = local_model.state_dict()
    header_size = check_header(path, local)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:  # the header was sound, so the data is at fault
        raise UnsafeModelFile(f"refusing to load {path}: unreadable tensor data after a {header_size}-byte "
                              f"header ({error})") from None
    require_matching_architecture(state, local)
    model = copy.deepcopy(local_model).to(device)
    model.load_state_dict(state, strict=True)
    check_model_values(model, f"refusing to load {path}")
    return model


def check_header(path: Path, local: dict[str, torch.Tensor]) -> int:
    """Check the safetensors header of ``path`` against the ``local`` state dict without reading tensor data;
    returns the header's length. Raises :class:`UnsafeModelFile` or :class:`ArchitectureMismatch`."""
    if not path.exists():
        raise FileNotFoundError(f"received model file {path} does not exist")
    if not path.is_file():
        raise UnsafeModelFile(f"refusing to load {path}: it is a directory, not a safetensors file")
    size = path.stat().st_size
    cap = _HEADER_BASE_BYTES + _HEADER_BYTES_PER_KEY * len(local)
    with path.open("rb") as handle:
        head = handle.read(9)
        length = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
        if length is None or head[8:9] != b"{":
            raise UnsafeModelFile(f"refusing to load {path}: it is {_looks_like(head, size)}, and only "
                                  "safetensors files are loaded (never unpickled)")
        if length > cap:
            raise UnsafeModelFile(f"refusing to load {path}: its header declares {length} bytes, more than the "
                                  f"{cap} a model of {len(local)} tensors needs")
        if 8 + length > size:
            raise UnsafeModelFile(f"refusing to load {path}: truncated safetensors file ({size} bytes, but its "
                                  f"header alone declares {length} bytes)")
        handle.seek(8)
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UnsafeModelFile(f"refusing to load {path}: its safetensors header is not valid JSON ({error})") from None
    entries = _entries(path, header)
    report = ArchitectureReport(extra=[k for k in entries if k not in local],
                                missing=[k for k in local if k not in entries])
    for key, (dtype, shape, _) in entries.items():
        if key in local:
            expected = local[key]
            if shape != tuple(expected.shape):
                report.reshaped[key] = (shape, tuple(expected.shape))
            elif _DTYPES.get(dtype) != expected.dtype:
                report.retyped[key] = (str(_DTYPES.get(dtype, dtype)), str(expected.dtype))
    if not report.ok:
        raise ArchitectureMismatch(report)
    _check_byte_ranges(path, entries, size - 8 - length)
    return length


def _looks_like(head: bytes, size: int) -> str:
    kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind:
        return kind
    if size < 9:
        return f"too short for a safetensors file ({size} bytes)"
    return "not a safetensors file (no JSON header after the 8-byte header length)"


def _entries(path: Path, header) -> dict[str, tuple[str, tuple[int, ...], tuple[int, int]]]:
    """Key -> (dtype, shape, data offsets) from a parsed header; a malformed entry raises naming the key."""
    if not isinstance(header, dict):
        raise UnsafeModelFile(f"refusing to load {path}: its safetensors header is not a JSON object")
    entries = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list)
                  and len(offsets) == 2 and all(type(v) is int and v >= 0 for v in [*shape, *offsets]))
        except (TypeError, KeyError):
            ok = False
        if not ok:
            raise UnsafeModelFile(f"refusing to load {path}: malformed header entry for {key!r} "
                                  "(expected dtype, shape and data_offsets)")
        entries[key] = (dtype, tuple(shape), tuple(offsets))
    return entries


def _check_byte_ranges(path: Path, entries: dict, data_bytes: int) -> None:
    """Every tensor's declared byte range matches its shape and dtype, and the ranges tile the data exactly."""
    end = 0
    for key, (dtype, shape, (begin, stop)) in sorted(entries.items(), key=lambda item: item[1][2]):
        need = math.prod(shape) * _DTYPES[dtype].itemsize
        if stop - begin != need:
            raise UnsafeModelFile(f"refusing to load {path}: {key!r} declares {stop - begin} bytes, but shape "
                                  f"{shape} of {dtype} needs {need}")
        if begin != end:
            raise UnsafeModelFile(f"refusing to load {path}: the data of {key!r} starts at byte {begin}, not {end} "
                                  "(overlapping or gapped tensors)")
        end = stop
    if end != data_bytes:
        what = "truncated" if end > data_bytes else "has trailing bytes"
        raise UnsafeModelFile(f"refusing to load {path}: {what}: its tensors need {end} data bytes, the file holds "
                              f"{data_bytes}")
