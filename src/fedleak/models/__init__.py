"""Model registry: ``build_model(name, input_shape, num_classes, **options)``.

Every model is an ``nn.Sequential`` of named children, in forward order, ending in a Linear ``classifier``
that outputs logits (the softmax/sigmoid is part of the loss). Attacks, defenses and detectors find "the first
conv/linear" or "the last linear" in the traced anatomy (:func:`fedleak.models.anatomy.trace`), which follows the
forward pass on any ``nn.Module``, not registration order.
Defenses are inserted between children with :func:`insert_module` (insertion points are in each module's
docstring); in any other model, :func:`insert_module` splices a module in at any module path and
:func:`insert_before_input` runs one on the model input. ``build_model`` records ``model.input_shape`` and ``model.num_classes`` on the model,
and ``model.defense_points``: where the authors of paper 001 put a defense in this model (defense name -> the
points, or the CVB's ``after``/``beta``/``kernel_size``); a defense not listed is placed from the traced anatomy
(:mod:`fedleak.defenses.dropout`, :mod:`fedleak.defenses.bottleneck`), as in any model outside the registry.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.models.checks import check_batch_shape, check_input_shape
from fedleak.models.insertion import insert_before_input, insert_module
from fedleak.registry import Registry

MODELS: Registry = Registry("model", fixed=("input_shape", "num_classes"))

__all__ = ["MODELS", "build_model", "check_batch_shape", "insert_before_input", "insert_module"]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, *,
                device: torch.device | str | None = None, **options) -> nn.Module:
    """Build the registered model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_classes``,
    with the model's own ``options``, on ``device`` (default: CPU)."""
    MODELS.check_options(name, options)
    input_shape = check_input_shape(input_shape, name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
    model = MODELS.build(name, input_shape, num_classes, **options)
    model.input_shape = input_shape
    model.num_classes = num_classes
    model.defense_points = dict(getattr(model, "defense_points", {}))
    return model.to(device) if device is not None else model


from fedleak.models import cnn, fcnn, vgg_cnn, imdb_fc, resnet, vit, transformer, embedding_lm  # noqa: E402,F401  (registration)
from fedleak.models import huggingface  # noqa: E402,F401  (registration; transformers is imported on use)
