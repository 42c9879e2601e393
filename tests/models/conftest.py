"""Shared checks for the model tests."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn


def gradient_matching_slope(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            direction: torch.Tensor) -> tuple[float, float]:
    """Directional derivative along ``direction`` of a gradient-matching loss ``D(x) = ||grad_theta L(x) - G||^2``.

    Returns (double backward through ``torch.autograd.grad(create_graph=True)``, central finite difference).
    This is the second-order derivative every gradient-inversion attack takes (paper 001, Algorithm 1).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = nn.CrossEntropyLoss() if y.dtype == torch.long else nn.BCEWithLogitsLoss()
    target = [torch.randn_like(p) for p in params]

    def distance(inputs: torch.Tensor, create_graph: bool) -> torch.Tensor:
        grads = torch.autograd.grad(loss_fn(model(inputs), y), params, create_graph=create_graph)
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target))

    x = x.detach().requires_grad_(True)
    (dx,) = torch.autograd.grad(distance(x, True), x)
    analytic = (dx * direction).sum().item()
    eps = 1e-6
    numeric = ((distance(x + eps * direction, False) - distance(x - eps * direction, False)) / (2 * eps)).item()
    return analytic, numeric


def smooth_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ReLU replaced by Softplus. With ReLU the gradient-matching loss jumps
    where a unit crosses its kink, so finite differences are only reliable on the smooth copy."""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus(beta=10))
    return model


@pytest.fixture
def second_order_check():
    """Check double backward of the gradient-matching loss (float64): it runs on the model as built and gives a
    non-zero slope, and on a smooth copy it matches finite differences to 1e-4 relative error."""

    def check(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.manual_seed(0)
        model, x = model.double(), x.double()
        direction = torch.randn_like(x)
        analytic, _ = gradient_matching_slope(model, x, y, direction)
        assert analytic != 0.0 and math.isfinite(analytic)
        analytic, numeric = gradient_matching_slope(smooth_copy(model), x, y, direction)
        assert abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric))

    return check


@pytest.fixture
def forward_backward():
    """Run a forward and backward pass; check the logits' shape and that every parameter got a finite gradient."""

    def run(model: nn.Module, x: torch.Tensor, outputs: int) -> torch.Tensor:
        logits = model(x)
        assert logits.shape == (x.shape[0], outputs)
        logits.square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
        return logits

    return run
