"""A small Vision Transformer (Dosovitskiy et al. 2021), the ViT of Scheliga et al. (paper 001, Tables 1-3).

Defaults: patch 4, 4 blocks, width 256, 16 heads, MLP ratio 1 (hidden 256), GELU, pre-norm LayerNorm blocks,
a class token, learned position embeddings, final LayerNorm and a Linear head on the class token. The paper
does not list the MLP width; ratio 1 gives 1.62M parameters on 3x32x32, matching the 16,092 gradient entries
left at 99% pruning (paper 001 §4.2; ratio 2 would give 2.14M). Attention is explicit math
(:class:`fedleak.models.attention.Attention`).

Children, in order: ``embed`` (:class:`PatchEmbedding`: ``proj`` Conv2d patchifier, ``cls_token``,
``pos_embedding``), ``blocks`` (an ``nn.Sequential`` of :class:`TransformerBlock` named ``"0"``, ``"1"``, ...),
``norm``, ``pool`` (class-token read-out), ``classifier``.
Defense insertion point "after the first block": ``after="blocks.0"``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from fedleak.models import MODELS
from fedleak.models.attention import transformer_blocks
from fedleak.models.checks import image_shape
from fedleak.models.layers import ClassTokenPool, sequential


class PatchEmbedding(nn.Module):
    """Cut an image into ``patch x patch`` patches, embed each linearly (``proj``, a stride-``patch`` Conv2d),
    prepend the learned ``cls_token`` and add the learned ``pos_embedding``: ``(B, C, H, W) -> (B, 1+N, width)``."""

    def __init__(self, channels: int, num_patches: int, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, width) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding


@MODELS.register("vit_small")
def build_vit_small(input_shape: tuple[int, ...], num_classes: int, patch: int = 4, depth: int = 4,
                    width: int = 256, heads: int = 16, mlp_ratio: int = 1) -> nn.Sequential:
    """A ViT for ``(channels, height, width)`` images whose height and width are multiples of ``patch``."""
    channels, height, image_width = image_shape(input_shape, "vit_small")
    if height % patch or image_width % patch:
        raise ValueError(f"vit_small: input_shape {input_shape} has height/width not divisible by patch={patch}")
    if width % heads:
        raise ValueError(f"vit_small: width={width} is not divisible by heads={heads}")
    num_patches = (height // patch) * (image_width // patch)
    model = sequential(embed=PatchEmbedding(channels, num_patches, patch, width),
                       blocks=transformer_blocks(depth, width, heads, mlp_ratio), norm=nn.LayerNorm(width),
                       pool=ClassTokenPool(), classifier=nn.Linear(width, num_classes))
    model.defense_points = {"dropout": dropout_points(model),  # CVB after the first transformer block
                            "cvb": {"after": "blocks.0", "beta": 0.1, "kernel_size": 3}}
    return model


def dropout_points(model: nn.Module) -> tuple[str, ...]:
    """Where the lucidrains ViT of the DIA code has Dropout: on the token embeddings and, in every transformer
    block, after the MLP's GELU and after its second linear layer (its two attention Dropouts are left out:
    fedleak's ``Attention`` has no insertion point)."""
    points = ["embed"]
    for name, block in model.get_submodule("blocks").named_children():
        mlp = getattr(block, "mlp", None)
        if isinstance(mlp, nn.Sequential):
            points += [f"blocks.{name}.mlp.act", f"blocks.{name}.mlp.fc2"]
    return tuple(points)
