"""A small token-sequence transformer classifier, the victim of the Decepticons attack
(Fowl et al. 2023; Wang & Li, paper 000, App. A.1.4).

Token embedding plus learned position embeddings, ``depth`` pre-norm encoder blocks with explicit
:class:`fedleak.models.attention.Attention`, final LayerNorm, mean over tokens, one Linear classifier.
Defaults: vocabulary 10,000, width 64, 2 blocks, 4 heads, MLP ratio 4. Inputs: integer token ids of shape
``(B, seq_len)`` in ``[0, vocab_size)``.

Children, in order: ``embed`` (:class:`TokenEmbedding`: ``token`` Embedding, ``position``), ``blocks``
(:class:`TransformerBlock` named ``"0"``, ``"1"``, ...), ``norm``, ``pool`` (mean over tokens), ``classifier``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.attention import transformer_blocks
from fedleak.models.checks import sequence_length
from fedleak.models.layers import MeanPool, sequential


class TokenEmbedding(nn.Module):
    """Token embedding ``token`` plus learned position embedding ``position`` (one row per position):
    ``(B, seq_len)`` ids ``-> (B, seq_len, width)``."""

    def __init__(self, vocab_size: int, seq_len: int, width: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.randn(seq_len, width) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token(tokens) + self.position


@MODELS.register("text_transformer")
def build_text_transformer(input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 10_000,
                           width: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: int = 4) -> nn.Sequential:
    """A transformer classifier for token sequences of shape ``(seq_len,)``."""
    seq_len = sequence_length(input_shape, "text_transformer")
    if width % heads:
        raise ValueError(f"text_transformer: width={width} is not divisible by heads={heads}")
    return sequential(embed=TokenEmbedding(vocab_size, seq_len, width),
                      blocks=transformer_blocks(depth, width, heads, mlp_ratio), norm=nn.LayerNorm(width),
                      pool=MeanPool(), classifier=nn.Linear(width, num_classes))
