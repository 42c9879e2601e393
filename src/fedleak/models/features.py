"""What a model's output layer reads: the features feature fishing thresholds (Wen et al. 2022 §4.2)."""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.models.anatomy import trace


def classifier_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs of the model's output layer for the batch ``x`` (what feature fishing thresholds), one row per
    sample, or per position of a sequence model's ``(B, L, features)`` input; the model is left in the mode it was in."""
    last = trace(model, x[:1]).output_layer().module
    seen = []
    handle = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
        model.train(was_training)
    return seen[0].reshape(-1, seen[0].shape[-1])
