"""Architectures of the benign zoo (:mod:`fedleak.benchmarks.benign_zoo`), written the way ordinary user code
and the common libraries write them, not fedleak's registry models: torchvision-style residual nets (with
``zero_init_residual``), MobileNet-style depthwise-separable and inverted-residual blocks, ResNeXt-style grouped
convolutions, all-convolutional classifiers (Springenberg et al. 2015: a 1x1 convolution and global pooling as the
head, no linear layer), timm-style ViTs (``qkv``/``proj`` linear maps, truncated-normal init, optional zero-init
projections and head), PEFT-style LoRA (``lora_A``/``lora_B`` as ``nn.Linear``, B zero), language models
(embedding + transformer encoder or LSTM) and a fastText-style ``EmbeddingBag`` classifier.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(in_features: int, widths: tuple[int, ...] = (256, 128), classes: int = 10) -> nn.Sequential:
    """Flatten, then Linear-ReLU per width, then the classifier."""
    layers, width = [nn.Flatten()], in_features
    for out in widths:
        layers += [nn.Linear(width, out), nn.ReLU()]
        width = out
    return nn.Sequential(*layers, nn.Linear(width, classes))


def lenet(channels: int, size: int, classes: int = 10) -> nn.Sequential:
    """LeNet-5 style: two 5x5 convolutions with max pooling, no normalisation, three linear layers."""
    side = ((size - 4) // 2 - 4) // 2
    return nn.Sequential(nn.Conv2d(channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes))


def bn_cnn(channels: int, widths: tuple[int, ...] = (16, 32, 64), classes: int = 10, *,
           stem_stride: int = 1) -> nn.Sequential:
    """Compact batch-norm CNN: per width a 3x3 convolution (no bias), batch norm, ReLU and 2x2 max pooling; global
    average pooling and a linear classifier."""
    layers, width = [], channels
    for i, out in enumerate(widths):
        layers += [nn.Conv2d(width, out, 3, stride=stem_stride if i == 0 else 1, padding=1, bias=False),
                   nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def _norm(kind: str, width: int) -> nn.Module:
    return nn.BatchNorm2d(width) if kind == "batch" else nn.GroupNorm(min(4, width), width)


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``; ``groups`` > 1 makes the first 3x3 convolution grouped (ResNeXt style)."""

    def __init__(self, width: int, out: int, stride: int, norm: str, groups: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(width, out, 3, stride, 1, bias=False, groups=groups if width % groups == 0 else 1)
        self.bn1, self.conv2, self.bn2 = _norm(norm, out), nn.Conv2d(out, out, 3, 1, 1, bias=False), _norm(norm, out)
        self.downsample = None
        if stride != 1 or width != out:
            self.downsample = nn.Sequential(nn.Conv2d(width, out, 1, stride, bias=False), _norm(norm, out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class ResNet(nn.Module):
    """A small torchvision-style ResNet (one block per stage); torchvision's init (Kaiming normal, fan-out, for
    convolutions; norm weight 1, bias 0) and its ``zero_init_residual`` (the last norm of every block starts at
    gamma 0, Goyal et al. 2017)."""

    def __init__(self, channels: int, widths=(16, 32, 64), classes: int = 10, *, norm: str = "batch",
                 groups: int = 1, zero_init_residual: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), _norm(norm, widths[0]),
                                  nn.ReLU())
        blocks, width = [], widths[0]
        for i, out in enumerate(widths):
            blocks.append(BasicBlock(width, out, 1 if i == 0 else 2, norm, groups))
            width = out
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(width, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for block in blocks:
                nn.init.zeros_(block.bn2.weight)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


def mobilenet(channels: int, widths=(16, 32, 64), classes: int = 10, *, inverted: bool = False,
              stem_stride: int = 2) -> nn.Sequential:
    """MobileNet v1 (depthwise 3x3 + pointwise 1x1, batch norm, ReLU6) or, with ``inverted``, v2-style blocks
    (1x1 expansion by 4, depthwise 3x3, linear 1x1 projection); PyTorch's default init, so every depthwise
    filter is a row of fan-in 9."""
    layers = [nn.Conv2d(channels, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU6()]
    width = widths[0]
    for i, out in enumerate(widths):
        stride = 1 if i == 0 else 2
        if inverted:
            hidden = 4 * width
            layers += [nn.Conv2d(width, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                       nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                       nn.ReLU6(), nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        else:
            layers += [nn.Conv2d(width, width, 3, stride, 1, groups=width, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU6(), nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU6()]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(width, classes))


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: 1x1 expansion by ``t`` (skipped at t = 1), 3x3 depthwise, linear 1x1
    projection, a residual connection when shapes allow."""

    def __init__(self, width: int, out: int, stride: int, t: int):
        super().__init__()
        hidden = width * t
        layers = [] if t == 1 else [nn.Conv2d(width, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        self.conv = nn.Sequential(*layers, nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                                  nn.BatchNorm2d(hidden), nn.ReLU6(), nn.Conv2d(hidden, out, 1, bias=False),
                                  nn.BatchNorm2d(out))
        self.residual = stride == 1 and width == out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # torchvision's inverted_residual_setting: t, c, n, s


def mobilenet_v2(channels: int, classes: int = 10, *, width_mult: float = 0.5) -> nn.Sequential:
    """torchvision's MobileNetV2 (Sandler et al. 2018, Table 2) at ``width_mult``, with its init (Kaiming normal
    fan-out for convolutions, N(0, 0.01) for the classifier): 17 blocks, thousands of 3x3 depthwise filters."""
    def scaled(c):
        return max(8, int(c * width_mult + 4) // 8 * 8)

    width = scaled(32)
    layers = [nn.Conv2d(channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6()]
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            layers.append(InvertedResidual(width, scaled(c), s if i == 0 else 1, t))
            width = scaled(c)
    last = 1280
    model = nn.Sequential(*layers, nn.Conv2d(width, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(last, classes))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model


def bn_head_cnn(channels: int, classes: int = 10, *, hidden: int = 64) -> nn.Sequential:
    """A compact CNN with stride-2 convolutions and batch norm, and a batch-normalised hidden layer in its head
    (Linear-BatchNorm1d-ReLU) before the classifier."""
    return nn.Sequential(nn.Conv2d(channels, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1),
                         nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(512, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, classes))


def all_conv(channels: int, classes: int = 10, *, width: int = 32, norm: bool = False) -> nn.Sequential:
    """All-convolutional net (Springenberg et al. 2015, model C, narrowed): 3x3 convolutions with stride-2
    convolutions instead of pooling, a 1x1 convolution to the classes and global average pooling: no linear
    layer."""
    def block(a, b, k=3, s=1):
        return [nn.Conv2d(a, b, k, s, k // 2), *([nn.BatchNorm2d(b)] if norm else []), nn.ReLU()]

    return nn.Sequential(*block(channels, width), *block(width, width, 3, 2), *block(width, 2 * width),
                         *block(2 * width, 2 * width, 3, 2), *block(2 * width, 2 * width, 1),
                         nn.Conv2d(2 * width, classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SelfAttention(nn.Module):
    """timm's ``Attention``: one ``qkv`` linear map, scaled dot-product attention, an output ``proj``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, causal: bool = False):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block (timm's ``Block``): attention and an MLP ``fc1``-GELU-``fc2``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x, causal: bool = False):
        x = x + self.attn(self.norm1(x), causal)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """A small ViT (Dosovitskiy et al. 2021) with timm's init (truncated normal, std 0.02, for linear maps and
    tokens; zero biases). ``zero_proj``: every block's attention ``proj`` and MLP ``fc2`` start at zero (residual
    branches that start as the identity, as in DiT's adaLN-zero or ReZero); ``zero_head``: the classifier starts at
    zero (timm's ``head_init_scale=0``, common when fine-tuning)."""

    def __init__(self, channels: int, size: int, patch: int, classes: int = 10, *, dim: int = 64, depth: int = 2,
                 heads: int = 4, zero_proj: bool = False, zero_head: bool = False):
        super().__init__()
        self.patch_embed = nn.Conv2d(channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for block in self.blocks if zero_proj else ():
            for layer in (block.attn.proj, block.fc2):
                nn.init.zeros_(layer.weight)
        if zero_head:
            nn.init.zeros_(self.head.weight)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class LoRALinear(nn.Module):
    """A frozen base ``nn.Linear`` plus PEFT's LoRA update ``(alpha / r) B A x`` (Hu et al. 2022, Eq. 3), with
    ``lora_A`` and ``lora_B`` built as ``nn.Linear`` and initialised as PEFT does: A Kaiming-uniform
    (a = sqrt 5), B zero."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: int = 16):
        super().__init__()
        self.base, self.scaling = base, alpha / r
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        base.requires_grad_(False)

    def forward(self, x):
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))


def add_lora(model: nn.Module, names: tuple[str, ...], r: int = 8) -> nn.Module:
    """``model`` with each linear layer whose dotted name ends with one of ``names`` wrapped in
    :class:`LoRALinear` (PEFT's ``target_modules``)."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and full.endswith(names):
                setattr(module, child_name, LoRALinear(child, r))
    return model


class TransformerLM(nn.Module):
    """Token and position embeddings, causal pre-norm blocks, a final norm and a next-token head."""

    def __init__(self, vocab: int, seq_len: int, *, dim: int = 64, depth: int = 2, heads: int = 4,
                 tied: bool = False):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x, causal=True)
        return self.head(self.norm(x))


class LSTMLM(nn.Module):
    """Embedding, a (multi-layer) LSTM and a next-token head."""

    def __init__(self, vocab: int, *, dim: int = 32, hidden: int = 64, layers: int = 1):
        super().__init__()
        self.embed, self.lstm = nn.Embedding(vocab, dim), nn.LSTM(dim, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])


class BagClassifier(nn.Module):
    """fastText-style: the mean of the token embeddings (``nn.EmbeddingBag``), a linear classifier."""

    def __init__(self, vocab: int, classes: int, *, dim: int = 32):
        super().__init__()
        self.bag, self.fc = nn.EmbeddingBag(vocab, dim, mode="mean"), nn.Linear(dim, classes)

    def forward(self, tokens):
        return self.fc(self.bag(tokens))
