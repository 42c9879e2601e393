"""Analytic label recovery from the gradient of the output layer (paper 001 §3.3 and §5.2: labels are known
because they can be read off the cross-entropy gradient of the last fully-connected layer).

With softmax and cross-entropy, the output-layer bias gradient of one sample is ``p - onehot(y)`` and the weight
gradient row ``c`` is ``(p_c - [c = y]) h`` with ``h`` the layer's input; only the true class has a negative
entry (iDLG, Zhao et al. 2020). For a batch, classes with a negative signal are present and the remaining labels
are assigned greedily by the per-sample "impact" (Wainakh et al.'s simple strategy, as breaching implements it).
"""
from __future__ import annotations

import torch


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
