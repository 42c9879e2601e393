"""Dropout as a defense (Scheliga et al. 2023; paper 001 §3.4.1): a random keep-mask psi ~ Bernoulli(1 - p)
multiplies a layer's output, scaled by 1 / (1 - p) to keep its magnitude.

Where it goes (``dropout`` defense, default rate p = 0.25 as in paper 001 §5.3). Paper 001 does not list the
positions; they follow the authors' code:

- ``cnn``, ``vgg_cnn``, ``fcnn`` and any model not named below: after every activation that is a child of an
  ``nn.Sequential`` (each conv/hidden block's ReLU; the last one feeds the classifier). The authors' CNN puts
  Dropout in each conv block ("regularization layer" before ReLU, the same thing for ReLU: relu(m x) = m relu(x)
  for a mask m >= 0) and their MLP after each hidden layer.
- ``resnet18``: one Dropout on the pooled features just before the classifier (the authors' ResNet).
- ``vit_small``: on the token embeddings and, in every transformer block, after the MLP's GELU and after its
  second linear layer (the lucidrains ViT of the DIA code). The two attention Dropouts of that ViT (on the
  attention weights and after the output projection) are left out: fedleak's ``Attention`` has no insertion point.

``at="block1.relu+block3.relu"`` puts Dropout after the named submodules instead.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from fedleak.checks import check_number
from fedleak.defenses import DEFENSES
from fedleak.defenses.stochastic import StochasticModule
from fedleak.defenses.target import Defended
from fedleak.models.insertion import insert_module

ACTIVATIONS = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU)


class StochasticDropout(StochasticModule):
    """``x * psi / (1 - p)`` with psi ~ Bernoulli(1 - p) of ``x``'s shape (paper 001 §3.4.1).

    Draws in training mode; in eval mode it is the identity like ``nn.Dropout``, unless ``override`` is set
    (an attacker's mask, possibly relaxed to [0, 1] as in DIA), which is used in either mode.
    """

    kind = "mask"

    def __init__(self, p: float = 0.25):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate p must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def fresh_draw(self, like: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(torch.full_like(like, 1.0 - self.p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.override is None:
            self.last_draw = None
            return x
        return x * self.draw(x) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _activation_points(model: nn.Module) -> list[str]:
    return [f"{parent}.{child}" if parent else child
            for parent, module in model.named_modules() if isinstance(module, nn.Sequential)
            for child, sub in module.named_children() if isinstance(sub, ACTIVATIONS)]


def _vit_points(model: nn.Module) -> list[str]:
    points = ["embed"]
    for name, block in model.get_submodule("blocks").named_children():
        mlp = getattr(block, "mlp", None)
        if isinstance(mlp, nn.Sequential):
            points += [f"blocks.{name}.mlp.act", f"blocks.{name}.mlp.fc2"]
    return points


POINTS = {
    "resnet18": lambda model: ["flatten"],
    "vit_small": _vit_points,
}


def dropout_points(model: nn.Module, model_name: str) -> list[str]:
    """The submodules after which the ``dropout`` defense inserts Dropout in ``model`` (see the module docstring)."""
    points = POINTS.get(model_name, _activation_points)(model)
    if not points:
        raise ValueError(f"found no place for Dropout in model {model_name!r}; name the submodules with at=...")
    return points


@DEFENSES.register("dropout")
def add_dropout(target: Defended, p: float = 0.25, at: str | Sequence[str] | None = None) -> Defended:
    """Insert :class:`StochasticDropout` (rate ``p``) after each submodule of :func:`dropout_points`, or after
    the ``+``-separated dotted paths in ``at``; each is named ``dropout_<child>`` next to its anchor."""
    check_number("dropout rate p", p, low=0, high=1, high_open=True)
    points = dropout_points(target.model, target.model_name) if at is None else (
        at.split("+") if isinstance(at, str) else list(at))
    for path in points:
        child = path.rpartition(".")[2]
        insert_module(target.model, f"dropout_{child}", StochasticDropout(p), after=path)
    return target
