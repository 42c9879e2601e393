"""A zoo of ordinary PyTorch models, written the way common tutorials write them (not fedleak's registry style):
activations called in ``forward`` (``F.relu``, ``torch.relu``, ``x.relu()``, ``F.gelu``, ``F.leaky_relu``) or as
modules, plain attributes, ``ModuleList``/``ModuleDict`` containers, batch and group norm, depthwise convolutions
with ReLU6 and residual adds (a MobileNetV2 block), pooling modules and functions, a residual network, a small ViT,
a fully convolutional net, LeNet-5, a plain ``nn.Sequential`` MLP, a model with data-dependent control flow, and a
text classifier with ``nn.Embedding``.

Every entry of :data:`ZOO` is a factory ``(input_shape, num_classes) -> nn.Module``; image models take
``(C, H, W)`` float inputs in [0, 1] of any size that survives their pooling (32 x 32 is safe), the text model
``(L,)`` token ids below :data:`VOCAB`. :data:`IMAGE`/:data:`TEXT` say which is which. The one zoo of ordinary
models: the anatomy, defense, attack and audit tests import it, and ``benchmarks/audit_zoo.py`` hands it to
``fedleak audit --model benchmarks/ordinary_zoo.py:NAME`` as a user's own file.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 10000  # the word-piece vocabulary fedleak trains on fortunes fits under it


class TutorialNet(nn.Module):
    """The PyTorch 60-minute blitz CIFAR net: conv/pool twice, three linear layers, all activations ``F.relu``."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        channels, height, width = input_shape
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        size = (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        self.fc1 = nn.Linear(16 * size, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MnistMLP(nn.Module):
    """The MNIST MLP: ``x.view(B, -1)``, two hidden layers with ``torch.relu`` and ``x.relu()``."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 256)
        self.fc2 = nn.Linear(256, 128)
        self.out = nn.Linear(128, num_classes)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = torch.relu(self.fc1(x))
        x = self.fc2(x).relu()
        return self.out(x)


class ModuleActivationCNN(nn.Module):
    """Plain attributes with one activation module per use (``nn.ReLU``), ``nn.AdaptiveAvgPool2d`` and a head."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.fc = nn.Linear(32 * 16, num_classes)

    def forward(self, x):
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


class ContainerNet(nn.Module):
    """Convolutions in a ``ModuleList``, the head in a ``ModuleDict``, ``x.relu()`` and ``F.max_pool2d``."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        channels, height, width = input_shape
        self.convs = nn.ModuleList([nn.Conv2d(channels, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)])
        self.head = nn.ModuleDict({"hidden": nn.Linear(16 * (height // 4) * (width // 4), 64),
                                   "out": nn.Linear(64, num_classes)})

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(conv(x).relu(), 2)
        x = self.head["hidden"](x.flatten(1)).relu()
        return self.head["out"](x)


class BatchNormCNN(nn.Module):
    """VGG-style ``features``/``classifier`` Sequentials: conv-BatchNorm-ReLU(inplace) blocks, max pooling."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        layers, channels = [], input_shape[0]
        for width in (16, 32):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Linear(channels * 4, 64), nn.ReLU(inplace=True), nn.Dropout(0.5),
                                        nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class GroupNormCNN(nn.Module):
    """Conv-GroupNorm-``F.gelu`` twice, global average pooling by ``x.mean((2, 3))``."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.gn2 = nn.GroupNorm(8, 32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.gelu(self.gn1(self.conv1(x)))
        x = F.gelu(self.gn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al. 2018, as torchvision writes it): 1x1 expansion, 3x3 depthwise, 1x1
    projection, BatchNorm and ReLU6, and the residual add when stride is 1 and the width is kept."""

    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Tiny(nn.Module):
    """A narrow MobileNetV2: stem, inverted residual blocks (two with residual adds), 1x1 head, global pooling."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(input_shape[0], 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                          nn.ReLU6(inplace=True)),
            InvertedResidual(16, 8, 1, 1), InvertedResidual(8, 12, 2, 4), InvertedResidual(12, 12, 1, 4),
            InvertedResidual(12, 16, 2, 4), InvertedResidual(16, 16, 1, 4),
            nn.Sequential(nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(inplace=True)))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """The kuangliu/pytorch-cifar ResNet block: ``F.relu(self.bn1(self.conv1(x)))``, ``out += self.shortcut(x)``."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNetTiny(nn.Module):
    """kuangliu's CIFAR ResNet, two stages of one block each, ``F.adaptive_avg_pool2d`` and a ``linear`` head."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.linear = nn.Linear(32, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer2(self.layer1(out))
        out = F.adaptive_avg_pool2d(out, 1).view(out.size(0), -1)
        return self.linear(out)


class EncoderBlock(nn.Module):
    """A pre-norm transformer block with ``nn.MultiheadAttention`` and an MLP with ``nn.GELU``."""

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A small ViT as tutorials write it: patch conv, class token and position embedding parameters on the model,
    blocks in a ``ModuleList``, the head on ``x[:, 0]``."""

    def __init__(self, input_shape, num_classes, patch=8, dim=32, depth=2, heads=2):
        super().__init__()
        channels, height, width = input_shape
        self.patch_embed = nn.Conv2d(channels, dim, patch, patch)
        tokens = (height // patch) * (width // patch) + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class AllConvNet(nn.Module):
    """A fully convolutional classifier (Springenberg et al. 2015 style): the last layer is a 1x1 convolution to
    the classes, averaged over space; no fully connected layer at all."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(input_shape[0], 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU())
        self.classify = nn.Conv2d(32, num_classes, 1)

    def forward(self, x):
        return self.classify(self.body(x)).mean((2, 3))


class GatedNet(nn.Module):
    """Data-dependent control flow (``torch.fx`` cannot trace it): a bright batch skips a layer;
    ``F.leaky_relu``."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], 8, 3, padding=1)
        self.extra = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.leaky_relu(self.conv(x))
        if x.mean() < 0.5:
            x = F.leaky_relu(self.extra(x))
        return self.fc(F.adaptive_max_pool2d(x, 1).flatten(1))


class TextClassifier(nn.Module):
    """The text-classification tutorial model: ``nn.Embedding``, mean over the tokens, a hidden layer with
    ``F.relu``, an output layer."""

    def __init__(self, input_shape, num_classes, vocab=VOCAB, dim=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.fc1 = nn.Linear(dim, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, tokens):
        x = self.embedding(tokens).mean(dim=1)
        return self.fc2(F.relu(self.fc1(x)))


class SequentialMLP(nn.Sequential):
    """A plain ``nn.Sequential`` MLP with module activations, the way the MNIST examples write it."""

    def __init__(self, input_shape, num_classes):
        super().__init__(nn.Flatten(), nn.Linear(math.prod(input_shape), 200), nn.ReLU(), nn.Linear(200, 100),
                         nn.ReLU(), nn.Linear(100, num_classes))


class LeNet5(nn.Module):
    """LeNet-5 as in the original paper: tanh activations called in ``forward`` and average pooling."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        channels, height, width = input_shape
        self.c1, self.c3 = nn.Conv2d(channels, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        side = ((height // 2 - 4) // 2) * ((width // 2 - 4) // 2)
        self.f5, self.f6, self.out = nn.Linear(16 * side, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        return self.out(torch.tanh(self.f6(torch.tanh(self.f5(x.flatten(1))))))


ZOO: dict[str, Callable[[tuple, int], nn.Module]] = {
    "tutorial_net": TutorialNet, "mlp": MnistMLP, "sequential_mlp": SequentialMLP, "lenet5": LeNet5,
    "module_activations": ModuleActivationCNN,
    "containers": ContainerNet, "batchnorm_cnn": BatchNormCNN, "groupnorm_cnn": GroupNormCNN,
    "mobilenet_v2": MobileNetV2Tiny, "resnet": ResNetTiny, "vit": TinyViT, "all_conv": AllConvNet,
    "gated": GatedNet, "text": TextClassifier,
}
TEXT = ("text",)
IMAGE = tuple(name for name in ZOO if name not in TEXT)


def build(name: str, input_shape: tuple[int, ...] | None = None, num_classes: int = 10) -> nn.Module:
    """Zoo model ``name`` for ``input_shape`` (default (3, 32, 32) images, 16 tokens for text)."""
    if input_shape is None:
        input_shape = (16,) if name in TEXT else (3, 32, 32)
    return ZOO[name](tuple(input_shape), num_classes)


def example_batch(name: str, input_shape: tuple[int, ...] | None = None, batch: int = 4,
                  seed: int = 0) -> torch.Tensor:
    """A batch of inputs the model accepts: images in [0, 1], or token ids."""
    generator = torch.Generator().manual_seed(seed)
    if name in TEXT:
        return torch.randint(0, VOCAB, (batch, *(input_shape or (16,))), generator=generator)
    return torch.rand(batch, *(input_shape or (3, 32, 32)), generator=generator)
