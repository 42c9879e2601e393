"""Per-sample task losses for the detectors' own forward passes."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_losses(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape (batch,): cross-entropy over classes (over tokens too for (B, L, V) outputs),
    binary cross-entropy for a single logit."""
    if outputs.dim() == 2 and outputs.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(outputs[:, 0], y.to(outputs.dtype), reduction="none")
    if outputs.dim() == 3 and y.dim() == 2:
        return F.cross_entropy(outputs.transpose(1, 2), y, reduction="none").mean(dim=1)
    if outputs.dim() != 2 or y.dim() != 1:
        raise ValueError(f"cannot score outputs of shape {tuple(outputs.shape)} against labels of shape "
                         f"{tuple(y.shape)}; expected (batch, classes) logits and (batch,) labels")
    return F.cross_entropy(outputs, y, reduction="none")
