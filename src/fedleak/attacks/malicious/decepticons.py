"""Decepticons: attention disabling and token imprinting in a transformer (Fowl et al., ICLR 2023; Wang & Li,
paper 000, App. A.1.4 Eq. 19).

Every attention layer is rewritten as in Eq. 19: query weights zero and query bias a scaled copy of the first
position embedding, key weights the identity and key bias zero, value weights and biases zero (the partial
identity of Eq. 19 with no carried dimensions). Every query then looks at the same place and the values are
zero, so the attention output is the constant ``proj.bias``: no token sees another, and each token's residual
stream is a function of its own token and position only. The first block's MLP layer ``fc1`` then becomes an
imprint in the spirit of Robbing the Fed: row ``i`` fires when a random projection ``m_i . u`` of its input
``u`` (the normalised token vector) exceeds a threshold set at the ``1 - 1/T`` quantile of that projection over a
sample of (token, position) pairs, for ``T`` expected tokens per update, so a row tends to hold one token. That row
gives ``u`` exactly (Eq. 5 of paper 002; the ratio does not depend on GELU's slope) and the server looks ``u`` up
in the table of every (token, position) vector it can compute. Deviation: the paper's adjacent-bin differences
need a piecewise-linear activation; with GELU we use one sharp threshold per row (``gain``), which isolates
tokens without differences.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from fedleak.checks import CheckedConfig, NotApplicable, count_field, positive_field, seed_field
from fedleak.attacks.analytic import extract_linear, layer_gradients
from fedleak.attacks.base import Reconstruction
from fedleak.attacks.malicious.text_embedding import nearest_rows
from fedleak.models.anatomy import trace
from fedleak.models.attention import Attention

SAMPLE = 65_536  # (token, position) pairs whose projections set the imprint thresholds


@dataclass
class DecepticonsConfig(CheckedConfig, what="Decepticons"):
    """``tokens_per_update`` T the server expects (batch size x sequence length); ``query_scale`` the factor on the
    first position embedding in the query bias; ``gain`` the sharpness of the imprint thresholds;
    ``disable_attention`` False keeps attention (the imprint alone, for comparison); ``input_shape`` ``(seq_len,)``
    to trace a model that does not record ``model.input_shape``."""

    tokens_per_update: int = count_field()
    query_scale: float = positive_field(1e3)
    gain: float = positive_field(1e4)
    disable_attention: bool = True
    seed: int = seed_field()
    input_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DecepticonsSecret:
    """The imprinted layer and what the server needs to compute its input for any (token, position): the
    token embeddings (V, width), the position embeddings (L, width), the constant attention output ``shift``
    (width,) and the block's ``norm2`` LayerNorm."""

    layer: str
    tokens: torch.Tensor
    positions: torch.Tensor
    shift: torch.Tensor
    norm: nn.LayerNorm

    @torch.no_grad()
    def vectors(self, token_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """The input of the imprinted layer for tokens ``token_ids`` at positions ``position_ids`` (same shape)."""
        return self.norm(self.tokens[token_ids] + self.positions[position_ids] + self.shift)

    @torch.no_grad()
    def position_table(self, position: int) -> torch.Tensor:
        """The input of the imprinted layer for every token at ``position`` (V, width)."""
        return self.norm(self.tokens + (self.positions[position] + self.shift))


@dataclass(frozen=True)
class _Parts:
    """Where Decepticons acts in a traced token transformer."""

    attentions: list[Attention]
    tokens: nn.Embedding
    positions: torch.Tensor
    norm: nn.LayerNorm
    imprint: str


def _parts(model: nn.Module, input_shape: tuple[int, ...] | None) -> _Parts:
    """The attention layers in execution order, the token embedding and the position embedding beside it (a
    ``position`` parameter of the embedding's parent), and after the first attention layer the norm and the
    linear layer that reads it (the first block's ``norm2`` and ``mlp.fc1``)."""
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        raise NotApplicable(f"Decepticons attacks token transformers that embed token ids; {type(model).__name__} "
                            "has no nn.Embedding: it is not a text model")
    anatomy = trace(model, input_shape=input_shape)
    layers = anatomy.layers("attention")
    if not layers:
        raise NotApplicable(f"{anatomy.model} runs no attention layer; Decepticons needs a token transformer "
                            "(build_model('text_transformer', ...))")
    wrong = [layer for layer in layers if not isinstance(layer.module, Attention)]
    if wrong:
        raise NotApplicable(f"Decepticons rewrites fedleak.models.attention.Attention layers; {wrong[0].name!r} is "
                            f"a {wrong[0].type}")
    embedding = anatomy.first("embedding")
    parent = model.get_submodule(embedding.name.rpartition(".")[0])
    positions = getattr(parent, "position", None)
    if not isinstance(embedding.module, nn.Embedding) or not isinstance(positions, torch.Tensor):
        raise NotApplicable("Decepticons needs a token embedding (nn.Embedding) with a learned position embedding "
                            "``position`` beside it (build_model('text_transformer', ...))")
    later = anatomy.after(layers[0].name)
    inside = layers[0].name + "."
    linear = next((layer for layer in later if layer.kind == "linear" and not layer.name.startswith(inside)), None)
    norms = [] if linear is None else [layer for layer in later[:later.index(linear)] if layer.kind == "norm"]
    if not norms or not isinstance(norms[-1].module, nn.LayerNorm):
        raise NotApplicable(f"Decepticons imprints the first linear layer after a LayerNorm that follows "
                            f"{layers[0].name!r}; the model has none")
    return _Parts([layer.module for layer in layers], embedding.module, positions, norms[-1].module, linear.name)


@torch.no_grad()
def disable(attention: Attention, first_position: torch.Tensor, query_scale: float) -> None:
    """Eq. 19 on one attention layer (``qkv`` rows stacked query, key, value)."""
    width = attention.proj.in_features
    weight, bias = attention.qkv.weight, attention.qkv.bias
    weight.zero_()
    bias.zero_()
    bias[:width] = query_scale * first_position
    weight[width:2 * width] = torch.eye(width, device=weight.device, dtype=weight.dtype)


def decepticons(model: nn.Module, config: DecepticonsConfig) -> tuple[nn.Module, DecepticonsSecret]:
    """A copy of a token transformer with every attention layer disabled and the first linear layer after the
    first one (the first block's ``mlp.fc1``) imprinting single tokens, and the secret."""
    model = copy.deepcopy(model)
    parts = _parts(model, config.input_shape)
    generator = torch.Generator().manual_seed(config.seed)
    if config.disable_attention:
        for attention in parts.attentions:
            disable(attention, parts.positions[0], config.query_scale)
    secret = DecepticonsSecret(parts.imprint, parts.tokens.weight.detach().clone(), parts.positions.detach().clone(),
                               parts.attentions[0].proj.bias.detach().clone(), copy.deepcopy(parts.norm))
    vocab, seq_len = secret.tokens.shape[0], secret.positions.shape[0]
    pairs = min(vocab * seq_len, SAMPLE)  # a sample of (token, position) pairs sets the thresholds
    choice = torch.randperm(vocab * seq_len, generator=generator)[:pairs].to(secret.tokens.device)
    sample = secret.vectors(choice // seq_len, choice % seq_len)
    fc1 = model.get_submodule(parts.imprint)
    directions = torch.randn(fc1.out_features, fc1.in_features, generator=generator).to(sample.device)
    directions = directions / directions.norm(dim=1, keepdim=True)
    quantile = 1.0 - 1.0 / max(config.tokens_per_update, 2)
    rank = min(pairs, max(1, round(quantile * pairs)))
    thresholds = (directions @ sample.T).kthvalue(rank, dim=1).values  # the quantile of each row's projection
    with torch.no_grad():
        fc1.weight.copy_(config.gain * directions)
        fc1.bias.copy_(-config.gain * thresholds)
    return model, secret


def extract_decepticons(update: Mapping[str, torch.Tensor], secret: DecepticonsSecret, *, device=None,
                        tolerance: float = 1e-4) -> Reconstruction:
    """Eq. 5 at the imprinted layer, each candidate matched to the nearest (token, position) vector: points are
    (position, token) pairs (K, 2), -1 and undeclared where no table entry lies within ``tolerance``."""
    weight, bias = layer_gradients(update, secret.layer, device=device)
    vectors, rows = extract_linear(weight, bias)
    finite = torch.isfinite(vectors).all(dim=1)
    safe = torch.where(finite.unsqueeze(1), vectors, torch.zeros_like(vectors))
    error = torch.full((len(rows),), float("inf"), device=safe.device)
    tokens = torch.full((len(rows),), -1, dtype=torch.long, device=safe.device)
    positions = torch.full_like(tokens, -1)
    for position in range(len(secret.positions)):  # one position at a time: the V x L table is never held whole
        nearest, relative = nearest_rows(safe, secret.position_table(position))
        better = relative < error
        error = torch.where(better, relative, error)
        tokens = torch.where(better, nearest, tokens)
        positions = torch.where(better, torch.full_like(positions, position), positions)
    found = finite & (error <= tolerance)
    missing = torch.full_like(tokens, -1)
    pairs = torch.stack([torch.where(found, positions, missing), torch.where(found, tokens, missing)], dim=1)
    return Reconstruction(pairs, declared=found, meta={"rows": rows}, info={"num_rows": len(bias)})
