"""Passive analytic extraction by an honest-but-curious server (Boenisch et al., paper 002, §5.1, Eq. 5).

The server sends the model unchanged and reads the inputs out of the gradient of the first fully connected layer,
provided that layer reads the raw input (nothing but flattening runs before it). Which rows hold a single input is
left to chance: the initialisation decides it (paper 002 Table 2). For a text model (Table 3, "passive") the layer
reads the flattened embeddings, which the server maps back to tokens through the model's own embedding table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from fedleak.attacks.analytic import LayerSecret, extraction_layer, identity_map
from fedleak.attacks.malicious.text_embedding import TextSecret
from fedleak.checks import NotApplicable, check_levels, check_number
from fedleak.models.anatomy import Anatomy, trace


@dataclass
class PassiveConfig:
    """``layer``: the extraction layer (default: the first fully connected layer to run); ``levels``: the data's
    quantisation the server assumes (255: 8-bit images; ``None`` for real-valued inputs)."""

    input_shape: tuple[int, ...]
    layer: str | None = None
    levels: int | None = 255

    def __post_init__(self):
        check_levels("passive", self.levels)


def raw_input_reason(anatomy: Anatomy, name: str, input_shape: tuple[int, ...]) -> str:
    """Why fully connected layer ``name`` of a traced model does not read the raw input of ``input_shape`` ("" when
    it does: nothing but flattening runs before it, in modules or in the forward code, and it reads every
    feature)."""
    if anatomy.functional_note:
        return anatomy.functional_note
    before = [step for step in anatomy.steps_before(name) if not _passes_input(step)]
    if before:
        shown = ", ".join(f"{s.name} ({s.layer.type if s.layer is not None else s.function})" for s in before[:4])
        more = f" and {len(before) - 4} more" if len(before) > 4 else ""
        return f"{name!r} runs after {shown}{more}"
    features = anatomy.layer(name).module.in_features
    if features != math.prod(input_shape):
        return f"{name!r} reads {features} features, not the {math.prod(input_shape)} of the input"
    return ""


def _passes_input(step) -> bool:
    if step.layer is None:
        return step.kind == "reshape"
    return isinstance(step.layer.module, (nn.Flatten, nn.Identity)) or not step.layer.leaf


def input_layer(anatomy: Anatomy, input_shape: tuple[int, ...] | None, layer: str | None = None, *,
                levels: int | None = 255) -> LayerSecret | None:
    """The secret of the fully connected layer ``layer`` (default: the first) of a traced model when it reads the
    raw input of ``input_shape``, else ``None`` (also when the input shape is unknown)."""
    if input_shape is None:
        return None
    name, _ = extraction_layer(anatomy, layer)
    if raw_input_reason(anatomy, name, input_shape):
        return None
    return LayerSecret(name, identity_map(tuple(input_shape), levels=levels))


def passive(model: nn.Module, config: PassiveConfig) -> tuple[nn.Module, LayerSecret]:
    """Passive extraction (paper 002 §5.1): the model unchanged, and the extraction layer as the secret."""
    anatomy = trace(model, input_shape=config.input_shape)
    name, _ = extraction_layer(anatomy, config.layer)
    reason = raw_input_reason(anatomy, name, config.input_shape)
    if reason:
        raise NotApplicable(f"passive extraction needs a fully connected layer that reads the raw input "
                            f"{tuple(config.input_shape)}; {reason}")
    return model, LayerSecret(name, identity_map(tuple(config.input_shape), levels=config.levels))


@dataclass
class PassiveTextConfig:
    """``seq_len`` tokens per sequence; ``layer``: the dense layer that reads the flattened embeddings (default:
    the first fully connected layer)."""

    seq_len: int
    layer: str | None = None

    def __post_init__(self):
        check_number("passive text seq_len", self.seq_len, low=1, integer=True)


def passive_text(model: nn.Module, config: PassiveTextConfig) -> tuple[nn.Module, TextSecret]:
    """Passive text extraction (paper 002 Table 3, "passive"): the model unchanged, and as the secret the dense
    layer after the embedding and the model's own embedding table (the server knows the model it sent).
    Extract with :func:`fedleak.attacks.malicious.text_embedding.extract_text`."""
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        raise NotApplicable(f"text extraction reads token ids through an embedding layer (nn.Embedding); "
                            f"{type(model).__name__} has none: it is not a text model")
    anatomy = trace(model, input_shape=(config.seq_len,))
    embedding = anatomy.first("embedding").module
    name, linear = extraction_layer(anatomy, config.layer)
    if linear.in_features != config.seq_len * embedding.embedding_dim:
        raise NotApplicable(f"{name!r} reads {linear.in_features} features, not the {config.seq_len} x "
                            f"{embedding.embedding_dim} flattened embeddings")
    return model, TextSecret(name, embedding.weight.detach().clone(), config.seq_len)
