"""A zoo of ordinary PyTorch models, written the way tutorials and user code write them (not from fedleak's
registry), for ``benchmarks/audit_zoo.py``: functional and module activations, non-``Sequential`` containers
(``ModuleList``, ``ModuleDict``, attributes), batch and group norm, pooling, a MobileNetV2-style block (depthwise
convolution, batch norm, ReLU6, residual add) and one text model. Every factory takes ``input_shape`` and
``num_classes``, as ``fedleak audit --model benchmarks/audit_zoo_models.py:NAME`` calls it."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TutorialNet(nn.Module):
    """The PyTorch CIFAR tutorial's net: convs, max pooling, F.relu in forward, three linear layers."""

    def __init__(self, channels, size, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class MLP(nn.Module):
    """A multilayer perceptron with F.relu and dropout in forward."""

    def __init__(self, features, num_classes, hidden=256):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(features, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden,
                                                                                                       num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(F.relu(self.fc2(x)), 0.1, self.training)
        return self.out(x)


class ModuleActivations(nn.Module):
    """Module activations held as attributes, not in a Sequential: conv, nn.ReLU, conv, nn.GELU, global pooling."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.conv_a, self.act_a = nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU()
        self.conv_b, self.act_b = nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.GELU()
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.act_b(self.conv_b(self.act_a(self.conv_a(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class ListNet(nn.Module):
    """Convolution blocks in an nn.ModuleList, batch norm, F.relu and average pooling."""

    def __init__(self, channels, num_classes, widths=(16, 32)):
        super().__init__()
        self.blocks = nn.ModuleList()
        for width in widths:
            self.blocks.append(nn.ModuleDict({"conv": nn.Conv2d(channels, width, 3, padding=1),
                                              "bn": nn.BatchNorm2d(width)}))
            channels = width
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = F.avg_pool2d(F.relu(block["bn"](block["conv"](x))), 2)
        return self.classifier(x.mean(dim=(2, 3)))


class GroupNormNet(nn.Module):
    """Group norm instead of batch norm (what federated learning papers recommend), SiLU, a 2-layer head."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.GroupNorm(8, 64),
                                      nn.SiLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise convolution, 1x1 projection, batch norm, ReLU6 and a
    residual add when shapes allow."""

    def __init__(self, inp, out, stride, expand):
        super().__init__()
        hidden = inp * expand
        self.use_residual = stride == 1 and inp == out
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class TinyMobileNetV2(nn.Module):
    """A small MobileNetV2: stem, four inverted residual blocks (two with residual adds), 1x1 conv, pooling."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(True))
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 2), InvertedResidual(16, 24, 2, 4),
                                    InvertedResidual(24, 24, 1, 4), InvertedResidual(24, 32, 2, 4))
        self.last = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6(True))
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.last(self.blocks(self.stem(x)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


class BasicBlock(nn.Module):
    """ResNet's basic block with F.relu after the residual add and a 1x1 shortcut when shapes change."""

    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out)
        self.conv2, self.bn2 = nn.Conv2d(out, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential() if stride == 1 and inp == out else nn.Sequential(
            nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A ResNet of three basic blocks (the CIFAR tutorials' ResNet, narrowed)."""

    def __init__(self, channels, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        self.layer1, self.layer2, self.layer3 = BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.avg_pool2d(x, x.shape[-1]).flatten(1))


class LeNet5(nn.Module):
    """LeNet-5 with tanh and average pooling, as in the original paper."""

    def __init__(self, channels, size, num_classes):
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(channels, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        side = (size // 2 - 4) // 2
        self.f5, self.f6, self.out = nn.Linear(16 * side * side, 120), nn.Linear(120, 84), nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
        return self.out(torch.tanh(self.f6(torch.tanh(self.f5(x.flatten(1))))))


class TextClassifier(nn.Module):
    """The text tutorial's classifier: token embedding, mean over the sequence, two linear layers with F.relu."""

    def __init__(self, vocab, num_classes, dim=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, padding_idx=0)
        self.fc = nn.Linear(dim, 64)
        self.out = nn.Linear(64, num_classes)

    def forward(self, tokens):
        return self.out(F.relu(self.fc(self.embedding(tokens).mean(dim=1))))


def tutorial_net(input_shape, num_classes):
    return TutorialNet(input_shape[0], input_shape[-1], num_classes)


def mlp(input_shape, num_classes):
    return MLP(int(torch.tensor(input_shape).prod()), num_classes)


def sequential_mlp(input_shape, num_classes):
    """An nn.Sequential MLP with module activations."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), 200), nn.ReLU(),
                         nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, num_classes))


def module_activations(input_shape, num_classes):
    return ModuleActivations(input_shape[0], num_classes)


def list_net(input_shape, num_classes):
    return ListNet(input_shape[0], num_classes)


def group_norm_net(input_shape, num_classes):
    return GroupNormNet(input_shape[0], num_classes)


def mobilenet_v2(input_shape, num_classes):
    return TinyMobileNetV2(input_shape[0], num_classes)


def resnet(input_shape, num_classes):
    return TinyResNet(input_shape[0], num_classes)


def lenet5(input_shape, num_classes):
    return LeNet5(input_shape[0], input_shape[-1], num_classes)


def text_classifier(input_shape, num_classes, vocab=10000):
    return TextClassifier(vocab, num_classes)


IMAGE_MODELS = ("tutorial_net", "mlp", "sequential_mlp", "module_activations", "list_net", "group_norm_net",
                "mobilenet_v2", "resnet", "lenet5")
TEXT_MODELS = ("text_classifier",)
