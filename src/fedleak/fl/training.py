"""Local training primitives shared by clients, defenses and attacks."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

GradientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def task_loss(model: nn.Module, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean classification loss plus every module's ``auxiliary_loss()`` (the KL term of PRECODE/CVB).

    One output logit means a binary task (BCE with logits); otherwise cross-entropy."""
    if outputs.shape[-1] == 1:
        loss = F.binary_cross_entropy_with_logits(outputs.squeeze(-1), y.float())
    else:
        loss = F.cross_entropy(outputs, y)
    for module in model.modules():
        extra = getattr(module, "auxiliary_loss", None)
        if callable(extra):
            loss = loss + extra()
    return loss


def batch_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The standard gradient of ``task_loss`` averaged over the batch, keyed by parameter name."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
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
    """(mean loss, accuracy) of ``model`` on a TensorDataset, in eval mode."""
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
        correct += (pred == y).sum()
    model.train(was_training)
    n = len(dataset)
    return float(total_loss) / n, float(correct) / n
