"""The IMDB text classifier of Boenisch et al. (paper 002, Table 8 and §8).

Embedding (10,000-token vocabulary, 250 dimensions) of each token of a ``seq_len``-token sentence, the
``seq_len * 250`` embeddings flattened into one Dense 1000 ReLU layer, then a Dense output layer. The attacker
extracts the embeddings from ``fc1.linear`` (bias, then ReLU) and maps them back to tokens.

Outputs: one logit when ``num_classes`` is 1 or 2 (the paper's Dense(n=1); train with
``BCEWithLogitsLoss`` on float 0/1 labels), otherwise ``num_classes`` logits (cross-entropy).
Inputs: integer token ids of shape ``(B, seq_len)`` in ``[0, vocab_size)``.

Children, in order: ``embedding``, ``flatten``, ``fc1`` (``linear`` + ``relu``), ``classifier``.
"""
from __future__ import annotations

import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import sequence_length
from fedleak.models.layers import linear_relu, sequential


@MODELS.register("imdb_fc")
def build_imdb_fc(input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 10_000,
                  embed_dim: int = 250, hidden: int = 1000) -> nn.Sequential:
    """Boenisch et al.'s IMDB model for token sequences of shape ``(seq_len,)``."""
    seq_len = sequence_length(input_shape, "imdb_fc")
    outputs = 1 if num_classes <= 2 else num_classes
    return sequential(embedding=nn.Embedding(vocab_size, embed_dim), flatten=nn.Flatten(),
                      fc1=linear_relu(seq_len * embed_dim, hidden), classifier=nn.Linear(hidden, outputs))
