"""Analytic label recovery from the gradient of the output layer (paper 001 §3.3 and §5.2: labels are known
because they can be read off the cross-entropy gradient of the last fully-connected layer).

With softmax and cross-entropy, the output-layer bias gradient of one sample is ``p - onehot(y)`` and the weight
gradient row ``c`` is ``(p_c - [c = y]) h`` with ``h`` the layer's input; only the true class has a negative
entry (iDLG, Zhao et al. 2020). For a batch, classes with a negative signal are present and the remaining labels
are assigned greedily by the per-sample "impact" (Wainakh et al.'s simple strategy, as breaching implements it).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
from torch.func import functional_call

from fedleak.attacks.base import LocalTraining


def _signal(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None) -> torch.Tensor:
    """Per-class signal: the bias gradient where there is one (robust to negative layer inputs, e.g. after a
    PRECODE decoder), else the weight-gradient row sums (iDLG's rule for non-negative inputs)."""
    return bias_grad if bias_grad is not None else weight_grad.sum(-1)


def idlg_labels(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None = None) -> torch.Tensor:
    """iDLG (Zhao et al. 2020) for many independent B = 1 victims: ``weight_grad`` ``(V, C, d)`` and
    ``bias_grad`` ``(V, C)`` of the output layer -> labels ``(V,)``: the class with the most negative signal."""
    if weight_grad.dim() != 3:
        raise ValueError(f"idlg_labels needs a stacked output-layer weight gradient (V, C, d), "
                         f"got shape {tuple(weight_grad.shape)}")
    return _signal(weight_grad, bias_grad).argmin(-1)


def batch_labels(weight_grad: torch.Tensor, bias_grad: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """Labels of one batch of ``batch_size`` samples from its mean output-layer gradient (``(C, d)``, ``(C,)``).

    Classes with a negative signal come first (most negative first); the rest are filled greedily, each pick
    lowering the chosen class's remaining signal by the mean per-sample impact
    ``m = sum(negative signal) (1 + 1/C) / B`` (Wainakh et al. 2022, breaching's "wainakh-simple")."""
    if weight_grad.dim() != 2:
        raise ValueError(f"batch_labels needs the output-layer weight gradient (C, d), got {tuple(weight_grad.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    signal = _signal(weight_grad, bias_grad).detach().clone()
    num_classes = signal.shape[0]
    impact = signal.clamp(max=0).sum() * (1 + 1 / num_classes) / batch_size
    negative = torch.nonzero(signal < 0).flatten()
    negative = negative[signal[negative].argsort()][:batch_size]
    labels = list(negative)
    signal[negative] -= impact
    while len(labels) < batch_size:
        pick = signal.argmin()
        labels.append(pick)
        signal[pick] -= impact
    return torch.stack(labels).sort().values


def largest_remainder(shares: torch.Tensor, total: int) -> torch.Tensor:
    """Integer counts ``(C,)`` summing to ``total`` closest to the non-negative real ``shares`` (Hamilton's
    method: floors first, the remaining units to the largest remainders)."""
    shares = shares.clamp_min(0)
    shares = shares * (total / shares.sum()) if shares.sum() > 0 else torch.full_like(shares, total / len(shares))
    counts = shares.floor().long()
    missing = total - int(counts.sum())
    if missing > 0:
        counts[(shares - counts).argsort(descending=True)[:missing]] += 1
    return counts


def fedavg_label_counts(model: nn.Module, layer: str, update: Mapping[str, torch.Tensor], local: LocalTraining,
                        samples: int, dummy: torch.Tensor) -> torch.Tensor:
    """The client's label counts ``(C,)`` (summing to ``samples``) from one FedAvg update (Dimitrov et al. 2022,
    §4.3: Geng et al.'s FedSGD label-count estimate applied at every local step, the unobserved weights of step
    t estimated by interpolating linearly between the sent weights and the returned ones).

    For the output layer's bias with cross-entropy, ``delta_b = -lr sum_t (pbar_t - n_t / B)`` where ``pbar_t``
    is step t's mean softmax and ``n_t`` its label counts; summed over the T steps, whose labels cover each sample
    once per epoch, ``n = (N / T) (sum_t pbar_t + delta_b / lr)``. Without a bias the weight rows' sums serve, each
    step weighted by its mean feature sum ``O_t`` (Geng et al. eq. 9): ``n = N (sum_t pbar_t O_t + delta_W 1 /
    lr) / sum_t O_t``. ``pbar_t`` and ``O_t`` are read off the model at ``w_0 + (t / T) delta`` on ``dummy``
    inputs ``(M, *input)`` (the server has no data of the client's)."""
    steps = local.steps if local.steps is not None else local.epochs * -(-samples // local.batch_size)
    weight, bias = update[f"{layer}.weight"], update.get(f"{layer}.bias")
    start = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    module = dict(model.named_modules())[layer]
    captured: list[torch.Tensor] = []
    hook = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    p_sum, o_sum, po_sum = 0.0, 0.0, 0.0
    try:
        with torch.no_grad():
            for t in range(steps):
                share = (t + 0.5) / steps
                weights = {n: w + share * update[n].to(w) if n in update else w for n, w in start.items()}
                captured.clear()
                p = functional_call(model, {**weights, **buffers}, (dummy,)).softmax(-1).mean(0)
                o = captured[0].flatten(1).sum(1).mean()
                p_sum, o_sum, po_sum = p_sum + p, o_sum + o, po_sum + p * o
    finally:
        hook.remove()
        model.train(was_training)
    if bias is not None:
        shares = samples / steps * (p_sum + bias.to(p_sum) / local.lr)
    else:
        shares = samples * (po_sum + weight.sum(-1).to(p_sum) / local.lr) / o_sum
    return largest_remainder(shares, samples)
