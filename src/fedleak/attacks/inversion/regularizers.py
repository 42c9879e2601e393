"""Image priors added to the gradient distance (the R of eq. 1, paper 001 §3.3), one value per victim."""
from __future__ import annotations

import torch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation (Rudin et al. 1992) as Inverting Gradients uses it: the mean absolute
    difference of horizontal plus vertical neighbours, per image of a ``(V, C, H, W)`` batch -> ``(V,)``."""
    if x.dim() != 4:
        raise ValueError(f"total variation needs images of shape (V, C, H, W), got {tuple(x.shape)}")
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    return dx + dy
