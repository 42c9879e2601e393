"""Dropout as a defense (Scheliga et al. 2023; paper 001 §3.4.1): a random keep-mask psi ~ Bernoulli(1 - p)
multiplies a layer's output, scaled by 1 / (1 - p) to keep its magnitude.

Where it goes (``dropout`` defense, default rate p = 0.25 as in paper 001 §5.3). Paper 001 does not list the
positions; they follow the authors' code:

- where the model declares its authors' points (``model.defense_points["dropout"]``, recorded by
  :func:`fedleak.models.build_model`): after those; the registry's ``resnet18`` has one Dropout on the pooled
  features just before the classifier (the authors' ResNet) and ``vit_small`` one on the token embeddings and two
  in every transformer block's MLP (the lucidrains ViT of the DIA code, :func:`fedleak.models.vit.dropout_points`).
- ``cnn``, ``vgg_cnn``, ``fcnn`` and any other model: after every hidden activation that runs in the
  forward pass (each conv/hidden block's ReLU; the last one feeds the classifier), found in the traced anatomy
  (:func:`fedleak.models.anatomy.trace`), in any container. The authors' CNN puts Dropout in each conv block
  ("regularization layer" before ReLU, the same thing for ReLU: relu(m x) = m relu(x) for a mask m >= 0) and
  their MLP after each hidden layer. An activation written in the forward code (``F.relu(self.bn1(x))``) has no
  module to follow, so Dropout goes on its input, after the module that feeds it (``bn1``): the same for ReLU
  and ReLU6 (a mask m >= 0 commutes with them), a mask before the nonlinearity for GELU and the like. An
  activation module called more than once (one ``self.relu`` reused in a block) is skipped: one Dropout there
  would draw one mask per call and keep only the last, which an attacker mimicking the client cannot match.

``at="block1.relu+block3.relu"`` puts Dropout after the named submodules instead.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from fedleak.checks import NotApplicable, check_number
from fedleak.defenses import DEFENSES
from fedleak.models.stochastic import StochasticModule
from fedleak.defenses.defended import Defended
from fedleak.models.anatomy import Anatomy, trace
from fedleak.models.insertion import insert_module

HIDDEN_ACTIVATIONS = frozenset(("relu", "relu6", "gelu", "tanh", "sigmoid", "leaky_relu", "silu", "elu", "selu",
                                "celu", "hardswish", "hardtanh", "mish", "prelu", "softplus"))


class StochasticDropout(StochasticModule):
    """``x * psi / (1 - p)`` with psi ~ Bernoulli(1 - p) of ``x``'s shape (paper 001 §3.4.1).

    Draws in training mode; in eval mode it is the identity like ``nn.Dropout``, unless ``override`` is set
    (an attacker's mask, possibly relaxed to [0, 1] as in DIA), which is used in either mode.
    """

    kind = "mask"
    samplewise = True  # an elementwise mask

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


def activation_points(anatomy: Anatomy) -> tuple[list[str], list[str]]:
    """The module paths after which Dropout goes for every hidden activation of a traced model (module
    docstring), and why each activation that gets none is skipped."""
    points, skipped = [], []
    for step in anatomy.activations():
        output = not anatomy.readers(step.name) and not anatomy.functional_note  # (unknown without the dataflow)
        if step.function not in HIDDEN_ACTIVATIONS or output:
            continue  # an output nonlinearity (softmax, a final sigmoid) is not a hidden layer
        anchor = step if step.layer is not None else anatomy.producer(step)
        if anchor is None:
            skipped.append(f"{step.name} reads {' and '.join(step.reads)}, not the output of one module")
        elif anchor.layer.calls > 1:
            skipped.append(f"{anchor.name} runs {anchor.layer.calls} times per forward")
        elif anchor.name not in points:
            points.append(anchor.name)
    return points, skipped


def dropout_points(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """The submodules after which the ``dropout`` defense inserts Dropout in ``model`` (see the module docstring):
    those the model declares, else those of its traced anatomy; ``input_shape`` (default ``model.input_shape``) is
    what the model is traced on."""
    declared = getattr(model, "defense_points", {}).get("dropout")
    if declared is not None:
        return list(declared)
    anatomy = trace(model, input_shape=input_shape)
    points, skipped = activation_points(anatomy)
    if not points:
        found = ", ".join(f"{s.name} ({s.function})" for s in anatomy.activations()) or "none"
        why = f"; skipped: {'; '.join(skipped)}" if skipped else ""
        note = f"; {anatomy.functional_note}" if anatomy.functional_note else ""
        raise NotApplicable(f"Dropout goes after hidden activations, and {anatomy.model} has none to follow "
                            f"(activations run: {found}{why}){note}; name the submodules with dropout:at=PATH+PATH")
    return points


@DEFENSES.register("dropout")
def add_dropout(target: Defended, p: float = 0.25, at: str | Sequence[str] | None = None) -> Defended:
    """Insert :class:`StochasticDropout` (rate ``p``) after each submodule of :func:`dropout_points`, or after
    the ``+``-separated dotted paths in ``at``; each is named ``dropout_<child>`` next to its anchor."""
    check_number("dropout rate p", p, low=0, high=1, high_open=True)
    points = dropout_points(target.model, target.input_shape) if at is None else (
        at.split("+") if isinstance(at, str) else list(at))
    for path in sorted(points, key=lambda p: -p.count(".")):  # deepest first: a splice renames what is below it
        child = path.rpartition(".")[2]
        insert_module(target.model, f"dropout_{child}", StochasticDropout(p), after=path)
    return target
