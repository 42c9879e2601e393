"""The batch-norm statistics prior of GradInversion (Yin et al., "See Through Gradients: Image Batch Recovery via
GradInversion", CVPR 2021, eq. 5): R_BN(x) = sum_l ||mu_l(x) - mu_l^*||_2 + ||sigma^2_l(x) - sigma^2_l^*||_2 over
every batch-norm layer l, where mu_l(x), sigma^2_l(x) are the per-channel batch statistics of the dummy batch at
the layer's input and mu_l^*, sigma^2_l^* the target statistics.

The targets come in LeakPro's three modes: "running" (the running statistics of the model the server sent, which
Yin et al. use: they hold the data's statistics once the model has trained), "inferred" (read off the BN buffers a
client sends in a FedAvg update: the running statistics after S local steps with momentum m are
(1-m)^S r_0 + (1-(1-m)^S) s, so the weighted mean s of the client's batch statistics is r_0 + delta / (1-(1-m)^S),
one target per victim), "proxy" (the batch statistics of the server's public data). Variances are the unbiased
ones PyTorch keeps in its running statistics.

Every attack lane holds its own batch, so the statistics are those of each lane's batch (``vmap`` over lanes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn
from torch.func import vmap
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """Every batch-norm module of ``model`` (any dimension), in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, _BatchNorm)]


@dataclass
class BatchNormTargets:
    """The target mean and variance of each batch-norm layer, in :func:`batch_norm_layers` order: each ``(C,)``
    (one target for every victim) or ``(V, C)`` (one per victim); ``mode`` says where they came from."""

    mode: str
    means: list[torch.Tensor]
    variances: list[torch.Tensor]


def _moments(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of a ``(B, C, ...)`` batch-norm input."""
    dims = [0, *range(2, t.dim())]
    count = t.numel() // t.shape[1]
    return t.mean(dims), t.var(dims, correction=1 if count > 1 else 0)


def batch_statistics(model: nn.Module, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The batch statistics at every batch-norm layer's input of each lane's batch: ``x`` ``(L, B, *input)`` ->
    (means, variances), each a tuple of ``(L, C)`` tensors. ``model`` normalises with batch statistics (the
    attacker's copy, :func:`fedleak.attacks.inversion.dummy_gradients.attack_copy`)."""
    modules = [module for _, module in batch_norm_layers(model)]
    found: list[tuple[torch.Tensor, torch.Tensor]] = []

    def capture(_module, args):
        found.append(_moments(args[0]))

    def one_lane(batch: torch.Tensor):
        found.clear()
        model(batch)
        return tuple(m for m, _ in found), tuple(v for _, v in found)

    hooks = [module.register_forward_pre_hook(capture) for module in modules]
    try:
        return vmap(one_lane, randomness="different")(x)
    finally:
        for hook in hooks:
            hook.remove()


def running_targets(model: nn.Module) -> BatchNormTargets | None:
    """The running statistics of the model as sent; ``None`` when some batch-norm layer keeps none or has never
    been updated (its statistics are the initial 0 and 1, which say nothing about the data)."""
    layers = batch_norm_layers(model)
    if not layers or any(m.running_mean is None or m.num_batches_tracked is None or int(m.num_batches_tracked) == 0
                         for _, m in layers):
        return None
    return BatchNormTargets("running", [m.running_mean.detach().float() for _, m in layers],
                            [m.running_var.detach().float() for _, m in layers])


def inferred_targets(model: nn.Module, update: Mapping[str, torch.Tensor], steps: int) -> BatchNormTargets | None:
    """Per-victim targets read off the BN buffers of FedAvg updates ``name -> (V, C)`` (trained minus sent values)
    after ``steps`` local steps; ``None`` when the update does not carry every layer's running mean and variance."""
    layers = batch_norm_layers(model)
    keys = [(f"{name}.running_mean", f"{name}.running_var") for name, _ in layers]
    if not layers or any(k not in update for pair in keys for k in pair):
        return None
    means, variances = [], []
    for (mean_key, var_key), (name, module) in zip(keys, layers):
        if module.momentum is None or module.running_mean is None:
            raise ValueError(f"batch-norm layer {name!r} keeps a cumulative average (momentum=None) or no running "
                             f"statistics; its batch statistics cannot be inferred from the update")
        share = 1 - (1 - float(module.momentum)) ** steps
        old_mean, old_var = module.running_mean.detach().float(), module.running_var.detach().float()
        means.append(old_mean + update[mean_key].float() / share)
        variances.append((old_var + update[var_key].float() / share).clamp_min(0))
    return BatchNormTargets("inferred", means, variances)


def proxy_targets(model: nn.Module, public: torch.Tensor) -> BatchNormTargets | None:
    """The batch statistics of the server's public data ``(N, *input)`` (``model``: the attacker's copy)."""
    if not batch_norm_layers(model):
        return None
    with torch.no_grad():
        means, variances = batch_statistics(model, public.unsqueeze(0))
    return BatchNormTargets("proxy", [m[0] for m in means], [v[0] for v in variances])


class BatchNormPrior:
    """R_BN of Yin et al. (eq. 5) for attack lanes: ``prior(x (L, B, *input)) -> (L,)``; lane ``l`` is compared
    with the targets of victim ``lane_victim[l]`` (per-victim targets) or the shared ones."""

    def __init__(self, model: nn.Module, targets: BatchNormTargets, lane_victim: torch.Tensor):
        count = len(batch_norm_layers(model))
        if len(targets.means) != count:
            raise ValueError(f"batch-norm targets for {len(targets.means)} layers; the model has {count}")
        device = lane_victim.device

        def per_lane(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device)
            return t[lane_victim] if t.dim() == 2 else t.unsqueeze(0)

        self.model, self.mode = model, targets.mode
        self.means = [per_lane(t) for t in targets.means]
        self.variances = [per_lane(t) for t in targets.variances]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        means, variances = batch_statistics(self.model, x)
        total = torch.zeros(len(x), device=x.device)
        for mean, var, target_mean, target_var in zip(means, variances, self.means, self.variances):
            total = total + (mean - target_mean).norm(dim=1) + (var - target_var).norm(dim=1)
        return total
