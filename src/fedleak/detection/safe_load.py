"""Load a model file received from the server safely (Wang & Li §3.1).

Only the safetensors format is read — never ``torch.load``, whose unpickling runs code chosen by the sender. Every
key, shape and dtype is checked against the client's own architecture before anything is loaded, so an inserted
imprint layer or a resized tensor is refused with the offending names instead of being silently dropped.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fedleak.detection.architecture import require_matching_architecture


class UnsafeModelFile(ValueError):
    """A received file that is not in safetensors format (e.g. a pickled ``torch.save`` archive)."""


_SIGNATURES = {b"PK\x03\x04": "a zip archive (the torch.save format)", b"\x80": "a Python pickle"}


def save_model_file(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict as safetensors (what a server sends); tied tensors are stored separately."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()}, str(path))
    return path


def load_received_model(path: str | Path, local_model: nn.Module, *, device: str | torch.device = "cpu") -> nn.Module:
    """A copy of ``local_model`` on ``device`` holding the state read from the safetensors file ``path``.

    Raises :class:`UnsafeModelFile` for a file that is not safetensors (naming what it looks like) and
    :class:`fedleak.detection.architecture.ArchitectureMismatch` naming every extra, missing, reshaped or
    retyped key and every tensor with NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"received model file {path} does not exist")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        with path.open("rb") as handle:
            head = handle.read(4)
        kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), "not a safetensors file")
        raise UnsafeModelFile(f"refusing to load {path}: it is {kind}, and only safetensors files are loaded "
                              f"(never unpickled) ({error})") from None
    require_matching_architecture(state, local_model)
    model = copy.deepcopy(local_model).to(device)
    model.load_state_dict(state, strict=True)
    return model
