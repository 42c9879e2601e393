"""The in-memory dataset every fedleak loader returns, and the facts a model needs about it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset


class DataFormatError(ValueError):
    """A data folder or file that is missing or not in the expected format; the message names the file."""


@dataclass(frozen=True)
class DatasetInfo:
    """Shape, class count and normalisation of a dataset.

    ``input_shape`` is (C, H, W) for images and (seq_len,) for token sequences; ``mean``/``std`` are per-channel
    statistics of the [0, 1] pixels (empty for text); ``vocab`` is the token list for text datasets.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    kind: str = "image"  # "image" or "text"
    vocab: tuple[str, ...] = field(default=(), repr=False)


class TensorDataset(Dataset):
    """Inputs and labels held in memory.

    Images are stored as uint8 (N, C, H, W) and returned as float32 in [0, 1]; token sequences are stored and
    returned as int64 (N, L). ``x`` and ``y`` are public so that fast code paths can index them in bulk.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo):
        if len(x) != len(y):
            raise DataFormatError(f"{info.name}: {len(x)} inputs but {len(y)} labels")
        if tuple(x.shape[1:]) != tuple(info.input_shape):
            raise DataFormatError(f"{info.name}: inputs of shape {tuple(x.shape[1:])}, expected {info.input_shape}")
        self.x, self.y, self.info = x, y.long(), info

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self, index) -> torch.Tensor:
        """Model-ready inputs for an index, slice or index tensor (floats in [0, 1] for images)."""
        x = self.x[index]
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def __getitem__(self, index):
        return self.inputs(index), self.y[index]

    def subset(self, indices: torch.Tensor) -> "TensorDataset":
        indices = torch.as_tensor(indices, dtype=torch.long)
        return TensorDataset(self.x[indices], self.y[indices], self.info)

    def to(self, device) -> "TensorDataset":
        """The same dataset with ``x`` and ``y`` on ``device``."""
        return TensorDataset(self.x.to(device), self.y.to(device), self.info)
