"""The fully connected network (FC-NN) of Boenisch et al. (paper 002, Table 7).

Flatten, then Dense 1000, 3000, 3000, 2000, 1000 with ReLU, then Dense #classes (logits). The first dense
layer ``fc1.linear`` has a bias and is followed by ReLU: it is the layer the passive extraction and the trap
weights (paper 002 §5-6, Algorithm 1) read inputs from.

Children, in order: ``flatten``, ``fc1`` ... ``fcK`` (each ``linear`` + ``relu``), ``classifier``.
"""
from __future__ import annotations

import math

import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.layers import linear_relu, sequential

WIDTHS = (1000, 3000, 3000, 2000, 1000)


@MODELS.register("fcnn")
def build_fcnn(input_shape: tuple[int, ...], num_classes: int,
               widths: tuple[int, ...] = WIDTHS) -> nn.Sequential:
    """Boenisch et al.'s FC-NN for inputs of any shape (flattened); ``widths`` overrides the hidden widths."""
    widths = tuple(widths)
    if not widths or any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in widths):
        raise ValueError(f"fcnn: widths must be a non-empty sequence of positive ints, got {widths!r}")
    ins = (math.prod(input_shape),) + widths[:-1]
    hidden = {f"fc{i + 1}": linear_relu(n_in, n_out) for i, (n_in, n_out) in enumerate(zip(ins, widths))}
    return sequential(flatten=nn.Flatten(), **hidden, classifier=nn.Linear(widths[-1], num_classes))
