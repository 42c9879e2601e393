"""The weight initialisers of paper 002 Table 2 (Boenisch et al.), applied to every linear layer of a model."""
from __future__ import annotations

import torch
import torch.nn as nn

# name -> how a linear layer's weight is drawn; "gaussian_<std>" draws N(0, std^2)
WEIGHT_INITS = {"xavier_normal": nn.init.xavier_normal_, "xavier_uniform": nn.init.xavier_uniform_}
GAUSSIAN = "gaussian_"
PYTORCH_DEFAULT = "pytorch_default"  # nn.Linear's own init (Kaiming-uniform weights, non-zero uniform biases)


def _weight_init(name: str):
    if name in WEIGHT_INITS:
        return WEIGHT_INITS[name]
    if name.startswith(GAUSSIAN):
        try:
            std = float(name[len(GAUSSIAN):])
        except ValueError:
            std = -1.0
        if std > 0:
            return lambda weight: nn.init.normal_(weight, std=std)
    raise ValueError(f"unknown initialiser {name!r}; choose from {', '.join(WEIGHT_INITS)}, {GAUSSIAN}<std> or "
                     f"{PYTORCH_DEFAULT}")


def initialise_linear_layers(model: nn.Module, name: str, seed: int) -> None:
    """Table 2's initialiser ``name`` on every linear layer of ``model``, drawn from ``seed``: the weights from it,
    the biases zero (Keras' default, the paper's framework; Table 4 likewise initialises the whole FC-NN). With zero
    biases the layer's ReLU pattern does not depend on a Gaussian's sigma; a larger sigma makes the logits larger,
    so the softmax saturates and confidently classified inputs give an exactly zero ``dL/dy`` and leave the
    overlays (the paper's "larger span within the weight values"). ``pytorch_default`` redraws nn.Linear's own
    initialisation (Kaiming-uniform weights, non-zero uniform biases), what a PyTorch user gets."""
    weight_init = None if name == PYTORCH_DEFAULT else _weight_init(name)
    torch.manual_seed(seed)
    with torch.no_grad():
        for linear in (m for m in model.modules() if isinstance(m, nn.Linear)):
            if weight_init is None:
                linear.reset_parameters()
                continue
            weight_init(linear.weight)
            linear.bias.zero_()
