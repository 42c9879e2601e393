"""Turning uint8 image arrays into a :class:`TensorDataset`: resizing and per-channel statistics."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fedleak.data.base import DataFormatError, DatasetInfo, TensorDataset

_CHUNK = 4096  # images processed at once, so that float copies of a whole dataset are never held in memory


def as_size(size) -> tuple[int, int]:
    """``size`` as (H, W): an int means a square; anything else must be two positive ints."""
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or a pair (H, W) of positive ints, got {size!r}")
    return pair


def resize_images(x: torch.Tensor, size) -> torch.Tensor:
    """Resize uint8 images (N, C, H, W) to ``size`` with antialiased bilinear interpolation; returns uint8."""
    height, width = as_size(size)
    if tuple(x.shape[-2:]) == (height, width):
        return x
    out = torch.empty((*x.shape[:2], height, width), dtype=torch.uint8)
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK].float()
        chunk = F.interpolate(chunk, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + _CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), as [0, 1] pixel values."""
    if len(x) == 0:
        raise DataFormatError("cannot compute statistics of an empty image set")
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK].double().div_(255.0)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def image_dataset(name: str, x, y, num_classes: int, size=None) -> TensorDataset:
    """A dataset of uint8 images ``x`` (N, H, W) or (N, C, H, W) and integer labels ``y`` in [0, num_classes).

    ``size`` resizes every image; ``mean``/``std`` in the info are measured on the (resized) images.
    """
    x = torch.from_numpy(np.require(x, requirements=["C", "W"])) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    y = torch.as_tensor(np.asarray(y, dtype=np.int64) if not isinstance(y, torch.Tensor) else y).long()
    if x.dtype != torch.uint8:
        raise DataFormatError(f"{name}: images must be uint8, got {x.dtype}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise DataFormatError(f"{name}: images must have shape (N, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataFormatError(f"{name}: labels outside [0, {num_classes}): min {int(y.min())}, max {int(y.max())}")
    if size is not None:
        x = resize_images(x, size)
    mean, std = channel_stats(x)
    info = DatasetInfo(name=name, input_shape=tuple(x.shape[1:]), num_classes=num_classes, mean=mean, std=std)
    return TensorDataset(x.contiguous(), y, info)
