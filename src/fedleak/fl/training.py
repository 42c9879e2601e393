"""Local training primitives shared by clients, defenses and attacks."""
from __future__ import annotations

from typing import Callable, Collection, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

GradientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def auxiliary_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose ``auxiliary_loss()`` joins the training loss (the KL term of PRECODE/CVB)."""
    return [m for m in model.modules() if callable(getattr(m, "auxiliary_loss", None))]


def _check_shapes(outputs: torch.Tensor, y: torch.Tensor) -> None:
    if outputs.dim() == 2 and (y.shape == outputs.shape or (y.dim() == 1 and len(y) == len(outputs))):
        return
    if outputs.dim() == 3 and y.dim() == 2 and tuple(y.shape) == tuple(outputs.shape[:2]):
        return
    raise ValueError(f"cannot score outputs of shape {tuple(outputs.shape)} against labels of shape "
                     f"{tuple(y.shape)}; expected (batch, classes) logits with (batch,) labels or (batch, classes) "
                     f"label probabilities, or (batch, length, vocabulary) logits with (batch, length) tokens")


def task_loss(model: nn.Module, outputs: torch.Tensor, y: torch.Tensor, *,
              modules: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """Mean training loss of a batch plus every module's ``auxiliary_loss()`` (the KL term of PRECODE/CVB).

    One output logit means a binary task (BCE with logits); otherwise cross-entropy over classes, over every
    token for ``(B, L, V)`` logits with ``(B, L)`` labels. ``modules`` are the :func:`auxiliary_modules`, when
    found beforehand. :func:`sample_losses` is the same loss per sample."""
    _check_shapes(outputs, y)
    if outputs.shape[-1] == 1 and outputs.dim() == 2 and y.dim() == 1:
        loss = F.binary_cross_entropy_with_logits(outputs.squeeze(-1), y.float())
    elif outputs.dim() == 3:
        loss = F.cross_entropy(outputs.transpose(1, 2), y)
    else:
        loss = F.cross_entropy(outputs, y)
    for module in auxiliary_modules(model) if modules is None else modules:
        loss = loss + module.auxiliary_loss()
    return loss


def sample_losses(model: nn.Module, outputs: torch.Tensor, y: torch.Tensor, *,
                  modules: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """:func:`task_loss` of each sample, shape (B,): its own cross-entropy (averaged over its tokens) plus its
    share of every ``auxiliary_loss()`` (the module's ``sample_auxiliary_loss()``), so the mean is the batch's
    loss. The cross-entropy is written as ``log_softmax`` and a gather, which stay batched under ``vmap``."""
    _check_shapes(outputs, y)
    if outputs.shape[-1] == 1 and outputs.dim() == 2 and y.dim() == 1:
        loss = F.binary_cross_entropy_with_logits(outputs[:, 0], y.to(outputs.dtype), reduction="none")
    else:
        log_p = outputs.log_softmax(-1)
        if y.shape == outputs.shape:  # label probabilities
            loss = -(log_p * y).sum(-1)
        else:
            loss = -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        if loss.dim() == 2:
            loss = loss.mean(1)
    for module in auxiliary_modules(model) if modules is None else modules:
        per_sample = getattr(module, "sample_auxiliary_loss", None)
        if not callable(per_sample):
            raise ValueError(f"{type(module).__name__} has an auxiliary_loss() but no sample_auxiliary_loss(), "
                             f"so its share of each sample's loss is unknown")
        loss = loss + per_sample()
    return loss


def batch_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    only: Collection[str] | None = None) -> dict[str, torch.Tensor]:
    """The standard gradient of ``task_loss`` averaged over the batch, keyed by parameter name; ``only``: the
    parameter names to compute (the same numbers as those entries of the whole gradient, without the rest)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and (only is None or n in only)]
    if only is not None and len(named) != len(set(only)):
        missing = sorted(set(only) - {n for n, _ in named})
        raise KeyError(f"the model has no trainable parameter(s) {', '.join(missing)}")
    loss = task_loss(model, model(x), y)
    grads = torch.autograd.grad(loss, [p for _, p in named])
    return {n: g.detach() for (n, _), g in zip(named, grads)}


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd")


def apply_gradients(model: nn.Module, grads: dict[str, torch.Tensor]) -> None:
    """Write ``grads`` into ``.grad`` of the named parameters (for an optimizer step)."""
    for name, param in model.named_parameters():
        if name in grads:
            param.grad = grads[name]


@torch.no_grad()
def evaluate(model: nn.Module, dataset, *, batch_size: int = 512, device="cpu") -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on a TensorDataset, in eval mode (per-token accuracy for sequences)."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    for start in range(0, len(dataset), batch_size):
        x = dataset.inputs(slice(start, start + batch_size)).to(device)
        y = dataset.y[start : start + batch_size].to(device)
        out = model(x)
        total_loss += task_loss(model, out, y) * len(y)
        pred = (out.squeeze(-1) > 0).long() if out.shape[-1] == 1 else out.argmax(-1)
        correct += (pred == y).reshape(len(y), -1).float().mean(1).sum()  # a sequence scores its token accuracy
    model.train(was_training)
    n = len(dataset)
    return float(total_loss) / n, float(correct) / n
