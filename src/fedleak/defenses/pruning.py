"""Gradient pruning (Deep Gradient Compression, Lin et al. 2017; paper 001 §3.4.3): in every layer's tensor the
share p of entries with the smallest magnitude is set to zero, G~ = G * Phi.

As a client mod, :func:`pruning_mod` prunes the update the client sends (the FedSGD gradient or the FedAvg
parameter change) and records the masks Phi_C in ``update.metrics["prune_masks"]`` (bool tensors by name). The
masks are also visible in the update itself (Eq. 2: Phi_C = 1(|G~| > 0)), which is what the GPIA attacker uses.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from fedleak.checks import check_number
from fedleak.defenses import DEFENSES
from fedleak.defenses.defended import Defended


def prune_tensor(tensor: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the ``floor(p * n)`` smallest-magnitude entries of ``tensor``; returns (pruned, keep-mask)."""
    flat = tensor.reshape(-1)
    keep = flat.numel() - math.floor(p * flat.numel())
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    if keep > 0:
        mask[flat.abs().topk(keep, sorted=False).indices] = True
    mask = mask.reshape(tensor.shape)
    return tensor * mask, mask


def prune_gradients(tensors: dict[str, torch.Tensor], p: float
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Prune every floating-point tensor layer by layer (share ``p`` set to zero); other tensors pass unchanged.
    Returns (pruned tensors, keep-masks of the pruned ones)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"pruning rate p must be a number in [0, 1], got {p!r}")
    pruned, masks = {}, {}
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            pruned[name], masks[name] = prune_tensor(tensor, p)
        else:
            pruned[name] = tensor
    return pruned, masks


def pruning_mod(p: float):
    """A client mod that prunes the outgoing update with rate ``p`` and stores the masks in
    ``update.metrics["prune_masks"]``."""
    prune_gradients({}, p)  # validate p now, not in the first round

    def prune_update(model, client, call_next):
        update = call_next(model)
        tensors, masks = prune_gradients(update.tensors, p)
        return dataclasses.replace(update, tensors=tensors, metrics={**update.metrics, "prune_masks": masks})

    return prune_update


@DEFENSES.register("prune")
def add_pruning(target: Defended, p: float = 0.5) -> Defended:
    """Prune the client's update with rate ``p`` (default 0.5, paper 001 §5.3)."""
    check_number("pruning rate p", p, low=0, high=1)
    target.mods = (*target.mods, pruning_mod(p))
    return target
