"""Input-shape checks shared by the model builders and the FL code that feeds them data.

Every model is built for one ``input_shape`` (no batch dimension). These checks turn a mismatch into a
``ValueError`` that names both shapes, instead of a shape error deep inside a layer.
"""
from __future__ import annotations

import torch


def check_input_shape(input_shape: object, model_name: str = "model") -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of positive ints, or raise ``ValueError`` naming it and the model."""
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ValueError(f"{model_name}: input_shape must be a non-empty tuple of ints, got {input_shape!r}")
    for size in input_shape:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"{model_name}: input_shape must hold positive ints, got {tuple(input_shape)!r}")
    return tuple(input_shape)


def image_shape(input_shape: tuple[int, ...], model_name: str) -> tuple[int, int, int]:
    """Unpack a ``(channels, height, width)`` image shape, or raise ``ValueError`` naming the model."""
    if len(input_shape) != 3:
        raise ValueError(
            f"{model_name} takes images of shape (channels, height, width); got input_shape {input_shape}"
        )
    channels, height, width = input_shape
    return channels, height, width


def sequence_length(input_shape: tuple[int, ...], model_name: str) -> int:
    """Unpack a ``(seq_len,)`` token-sequence shape, or raise ``ValueError`` naming the model."""
    if len(input_shape) != 1:
        raise ValueError(f"{model_name} takes token sequences of shape (seq_len,); got input_shape {input_shape}")
    return input_shape[0]


def check_batch_shape(input_shape: tuple[int, ...], x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a batch of inputs of ``input_shape`` (the FL code calls this
    before training a model on a client's data)."""
    expected = tuple(input_shape)
    if tuple(x.shape) == expected:
        raise ValueError(f"data of shape {expected} has no batch dimension; the model expects (batch, *{expected})")
    if x.dim() != len(expected) + 1:
        raise ValueError(
            f"model expects inputs of shape {expected} but data is a tensor of shape {tuple(x.shape)} "
            f"(expected (batch, *{expected}))"
        )
    if tuple(x.shape[1:]) != expected:
        raise ValueError(f"model expects inputs of shape {expected} but data has {tuple(x.shape[1:])}")
