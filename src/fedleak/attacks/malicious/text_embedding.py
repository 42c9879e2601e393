"""Text extraction through the embedding layer (Boenisch et al., paper 002, §8 "Attack Instantiation").

The server sets the embedding weights uniform in (0, 1) and trap weights (Algorithm 1) on the dense layer that
reads the flattened embeddings, extracts embedding sequences there like images, and maps every extracted
embedding back to its token through the table it set (the inverse of the embedding layer). The paper hashes the
vectors; float round-off makes exact hashing fragile, so the lookup sorts the table by one projection,
searches the few nearest entries and accepts a token when the whole vector matches within a tolerance.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from fedleak.checks import CheckedConfig, NotApplicable, count_field, positive_field, seed_field
from fedleak.attacks.analytic import extract_linear, extraction_layer, layer_gradients
from fedleak.attacks.base import Reconstruction
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, set_trap_weights
from fedleak.models.anatomy import trace

WINDOW = 4  # table entries searched on each side of the projected position


@dataclass
class TextEmbeddingConfig(CheckedConfig, what="text embedding"):
    """``seq_len`` tokens per sequence; Algorithm 1's ``scale_factor`` (0.99 was best on IMDB, §8.3) and
    ``std``; ``layer`` the dense layer after the embedding (default: the first linear layer)."""

    seq_len: int = count_field()
    scale_factor: float = positive_field(0.99)
    std: float = positive_field(0.5)
    layer: str | None = None
    seed: int = seed_field()


@dataclass(frozen=True)
class TextSecret:
    """The extraction layer and the embedding table the server set (V, dim)."""

    layer: str
    table: torch.Tensor
    seq_len: int


def text_embedding(model: nn.Module, config: TextEmbeddingConfig) -> tuple[nn.Module, TextSecret]:
    """A copy of ``model`` with uniform(0, 1) embeddings and trap weights on the dense layer, and the secret."""
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        raise NotApplicable(f"text extraction reads token ids through an embedding layer (nn.Embedding); "
                            f"{type(model).__name__} has none: it is not a text model")
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(config.seed)
    anatomy = trace(model, input_shape=(config.seq_len,))
    embedding = anatomy.first("embedding").module
    name, linear = extraction_layer(anatomy, config.layer)
    features = config.seq_len * embedding.embedding_dim
    if linear.in_features != features:
        raise NotApplicable(f"{name!r} reads {linear.in_features} features, not the {config.seq_len} x "
                         f"{embedding.embedding_dim} flattened embeddings")
    with torch.no_grad():
        table = torch.rand(embedding.weight.shape, generator=generator)
        embedding.weight.copy_(table.to(embedding.weight.device))
    trap = TrapWeightsConfig((features,), scale_factor=config.scale_factor, std=config.std)
    set_trap_weights(linear, torch.arange(features), trap, generator)
    return model, TextSecret(name, table, config.seq_len)


def nearest_rows(vectors: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each vector (M, dim): the table row (V, dim) nearest to it among the ``2 * WINDOW + 1`` rows closest in
    one fixed random projection, and its relative l2 error. Exact for vectors that are (nearly) table rows."""
    table = table.to(vectors.device, vectors.dtype)
    direction = torch.randn(table.shape[1], generator=torch.Generator().manual_seed(0)).to(table.device, table.dtype)
    key = table @ direction
    order = key.argsort()
    spot = torch.searchsorted(key[order], (vectors @ direction).contiguous())
    offsets = torch.arange(-WINDOW, WINDOW + 1, device=vectors.device)
    candidates = order[(spot.unsqueeze(1) + offsets).clamp(0, len(order) - 1)]  # (M, 2 * WINDOW + 1)
    distance = (table[candidates] - vectors.unsqueeze(1)).norm(dim=2)
    best = distance.argmin(dim=1, keepdim=True)
    row = candidates.gather(1, best).squeeze(1)
    return row, distance.gather(1, best).squeeze(1) / table[row].norm(dim=1)


def lookup_tokens(vectors: torch.Tensor, table: torch.Tensor, *, tolerance: float = 1e-4) -> torch.Tensor:
    """The token of each vector (M, dim) whose table entry (V, dim) lies within ``tolerance`` (relative l2),
    else -1."""
    row, error = nearest_rows(vectors, table)
    return torch.where(error <= tolerance, row, torch.full_like(row, -1))


def extract_text(update: Mapping[str, torch.Tensor], secret: TextSecret, *, device=None,
                 tolerance: float = 1e-4) -> Reconstruction:
    """Eq. 5 at the dense layer, each extracted sequence of embeddings mapped back to tokens: token ids (K, seq_len),
    -1 where no table entry matches; a sequence is declared when every position matched (an individual one)."""
    weight, bias = layer_gradients(update, secret.layer, device=device)
    features, rows = extract_linear(weight, bias)
    dim = secret.table.shape[1]
    vectors = features.reshape(len(rows) * secret.seq_len, dim)
    finite = torch.isfinite(vectors).all(dim=1)
    tokens = lookup_tokens(torch.where(finite.unsqueeze(1), vectors, torch.zeros_like(vectors)), secret.table,
                           tolerance=tolerance)
    tokens = torch.where(finite, tokens, torch.full_like(tokens, -1)).reshape(len(rows), secret.seq_len)
    return Reconstruction(tokens, declared=(tokens >= 0).all(dim=1), meta={"rows": rows}, info={"num_rows": len(bias)})
