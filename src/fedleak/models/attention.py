"""Multi-head self-attention and the pre-norm transformer block shared by ``vit_small`` and
``text_transformer``.

Attention is written out as ``softmax(Q K^T / sqrt(d)) V`` (Vaswani et al. 2017; Wang & Li, Eq. 18) rather than
a fused kernel, so gradient-inversion attacks can take second derivatives through it and the Decepticons attack
(Wang & Li, App. A.1.4, Eq. 19) can set the query, key and value maps.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class Attention(nn.Module):
    """Multi-head self-attention on ``(B, N, width)`` token sequences.

    ``qkv`` is one ``Linear(width, 3 * width)`` whose output rows are stacked ``[query; key; value]``:
    ``qkv.weight[:width]`` is the query map, ``qkv.weight[width:2*width]`` the key map and
    ``qkv.weight[2*width:]`` the value map (same split for ``qkv.bias``). ``proj`` is the output
    ``Linear(width, width)``. Within each map, head ``h`` owns rows ``h*head_dim : (h+1)*head_dim``.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by its {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # each (B, heads, N, head_dim)
        scores = query @ key.transpose(-2, -1) / self.head_dim**0.5
        mixed = scores.softmax(dim=-1) @ value
        return self.proj(mixed.transpose(1, 2).reshape(batch, tokens, width))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Children: ``norm1`` (LayerNorm), ``attn`` (:class:`Attention`), ``norm2`` (LayerNorm) and
    ``mlp`` = Sequential(``fc1`` Linear(width, mlp_ratio*width), ``act`` GELU, ``fc2`` Linear back to width).
    ``mlp.fc1`` is the "first linear layer with activation" of the block that Decepticons rewrites.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        hidden = width * mlp_ratio
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(width, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def transformer_blocks(depth: int, width: int, heads: int, mlp_ratio: int) -> nn.Sequential:
    """``depth`` :class:`TransformerBlock` s in an ``nn.Sequential`` (children named ``"0"``, ``"1"``, ...)."""
    if depth < 1:
        raise ValueError(f"a transformer needs at least one block, got depth={depth}")
    return nn.Sequential(*(TransformerBlock(width, heads, mlp_ratio) for _ in range(depth)))
