"""An embedding+linear language model: the smallest next-token predictor (issue 11's "embedding+linear language
model"; the shape of the language models of paper 000 App. A.1.4 without the attention).

Each token of a ``(B, seq_len)`` sequence is embedded (``embed_dim``), optionally passed through one hidden
``Linear + ReLU`` of width ``hidden`` (per token), and a Linear ``classifier`` gives logits over the vocabulary at
every position: outputs ``(B, seq_len, num_classes)``, trained with cross-entropy against the ``(B, seq_len)``
next tokens (:func:`fedleak.fl.training.task_loss`). ``num_classes`` is the output vocabulary; the input vocabulary
``vocab_size`` defaults to it (one vocabulary in and out). Inputs: integer token ids in ``[0, vocab_size)``.

Children, in order: ``embedding`` (Embedding), ``hidden`` (``linear`` + ``relu``; only when ``hidden > 0``),
``classifier``.
"""
from __future__ import annotations

import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.checks import sequence_length
from fedleak.models.layers import linear_relu, sequential


@MODELS.register("embedding_lm")
def build_embedding_lm(input_shape: tuple[int, ...], num_classes: int, vocab_size: int | None = None,
                       embed_dim: int = 64, hidden: int = 0) -> nn.Sequential:
    """Token embedding -> (hidden Linear + ReLU when ``hidden > 0``) -> Linear over the ``num_classes``-token
    vocabulary, at every position of a ``(seq_len,)`` sequence."""
    sequence_length(input_shape, "embedding_lm")
    vocab_size = num_classes if vocab_size is None else vocab_size
    for name, value, low in (("vocab_size", vocab_size, 1), ("embed_dim", embed_dim, 1), ("hidden", hidden, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"embedding_lm: {name} must be an int >= {low}, got {value!r}")
    if hidden:
        return sequential(embedding=nn.Embedding(vocab_size, embed_dim), hidden=linear_relu(embed_dim, hidden),
                          classifier=nn.Linear(hidden, num_classes))
    return sequential(embedding=nn.Embedding(vocab_size, embed_dim), classifier=nn.Linear(embed_dim, num_classes))
