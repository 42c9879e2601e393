"""States of the benign zoo's models (:mod:`fedleak.benchmarks.benign_zoo`): brief central pre-training with the
common optimisers, PyTorch's own pruning (``torch.nn.utils.prune``: magnitude and L2-structured), channel removal,
int8 quantise-dequantise (``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``), Net2Net widening with
duplicated units (Chen et al. 2016, Net2WiderNet) and knowledge distillation (Hinton et al. 2015). Every step draws
from a generator the caller seeds."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import prune

OPTIMIZERS = {
    "sgd": lambda params, wd: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=wd),
    "adam": lambda params, wd: torch.optim.Adam(params, lr=1e-3, weight_decay=wd),  # weight decay here is L2
    "adamw": lambda params, wd: torch.optim.AdamW(params, lr=1e-3, weight_decay=wd),
}


def task_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of class logits ``(N, C)`` or next-token logits ``(N, L, V)``."""
    return F.cross_entropy(output.flatten(0, -2), y.flatten())


def pretrain(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, optimizer: str = "sgd",
             weight_decay: float = 0.0, steps: int = 40, batch_size: int = 32,
             generator: torch.Generator) -> nn.Module:
    """``model`` after ``steps`` minibatch steps of ``optimizer`` (SGD with momentum, Adam with L2 or AdamW) on
    ``data`` (inputs, labels), in training mode; returned in eval mode."""
    x, y = data
    params = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[optimizer](params, weight_decay)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(x), (batch_size,), generator=generator)
        opt.zero_grad()
        task_loss(model(x[pick]), y[pick]).backward()
        opt.step()
    return model.eval()


def distill(student: nn.Module, teacher: nn.Module, inputs: torch.Tensor, *, steps: int = 40,
            batch_size: int = 32, temperature: float = 4.0, generator: torch.Generator) -> nn.Module:
    """``student`` trained with Adam to match ``teacher``'s softened outputs (Hinton et al. 2015, the KL term of
    Eq. 2 at ``temperature``)."""
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    teacher.eval()
    student.train()
    for _ in range(steps):
        x = inputs[torch.randint(len(inputs), (batch_size,), generator=generator)]
        with torch.no_grad():
            target = F.softmax(teacher(x) / temperature, dim=-1)
        opt.zero_grad()
        loss = F.kl_div(F.log_softmax(student(x) / temperature, dim=-1), target, reduction="batchmean")
        (loss * temperature ** 2).backward()
        opt.step()
    return student.eval()


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, _ConvNd))]


def prune_magnitude(model: nn.Module, amount: float) -> nn.Module:
    """Global unstructured L1 (magnitude) pruning of every linear and convolution weight to ``amount`` zeros
    (``prune.global_unstructured``, the PyTorch pruning tutorial's recipe), made permanent."""
    params = _prunable(model)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)
    return model


def prune_structured(model: nn.Module, amount: float) -> nn.Module:
    """``prune.ln_structured`` (L2 norm, output channels) at ``amount`` on every layer but the classifier, made
    permanent: the pruned filters and units are zero, the shapes unchanged."""
    params = _prunable(model)[:-1]
    for module, name in params:
        prune.ln_structured(module, name, amount=amount, n=2, dim=0)
        prune.remove(module, name)
    return model


def remove_units(model: nn.Sequential, keep: float) -> nn.Sequential:
    """Channel-removal pruning of an MLP (:func:`fedleak.benchmarks.zoo_models.mlp`): each hidden layer keeps its
    ``keep`` share of units with the largest L2 weight norm, and the next layer the matching inputs (a dense,
    narrower model)."""
    model = copy.deepcopy(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    kept = None
    for layer, following in zip(linears[:-1], linears[1:]):
        weight = layer.weight.data if kept is None else layer.weight.data[:, kept]
        order = weight.norm(dim=1).argsort(descending=True)[:max(1, round(keep * len(weight)))].sort().values
        _resize(layer, weight[order], layer.bias.data[order])
        kept = order
    last = linears[-1]
    _resize(last, last.weight.data[:, kept], last.bias.data)
    return model


def _resize(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    layer.weight, layer.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())
    layer.out_features, layer.in_features = weight.shape


def quantize_dequantize(model: nn.Module, *, per_channel: bool) -> nn.Module:
    """Every linear and convolution weight quantised to symmetric int8 and back (post-training quantisation's
    weight path, as ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` with zero point 0 compute it):
    ``round(w / scale)`` clamped to [-128, 127], times ``scale = max|w| / 127`` per tensor or per output
    channel."""
    with torch.no_grad():
        for module, name in _prunable(model):
            weight = getattr(module, name)
            flat = weight.flatten(1).abs()
            peak = flat.amax(dim=1) if per_channel else flat.amax().expand(len(flat))
            scale = (peak / 127).clamp_min(1e-12).view(-1, *[1] * (weight.dim() - 1))
            weight.copy_((weight / scale).round().clamp(-128, 127) * scale)
    return model


def widen(model: nn.Sequential, factor: int = 2, *, noise: float = 0.0,
          generator: torch.Generator | None = None) -> nn.Sequential:
    """Net2WiderNet (Chen et al. 2016, Eq. 1-2) on every hidden layer of an MLP: each unit copied ``factor``
    times and its outgoing weights divided by ``factor``, which computes the same function; ``noise`` (relative
    to the weights' std) added to the copies' incoming weights breaks the symmetry, as the paper suggests."""
    model = copy.deepcopy(model)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for layer, following in zip(linears[:-1], linears[1:]):
        weight = layer.weight.data.repeat(factor, 1)
        if noise:
            weight = weight + noise * weight.std() * torch.randn(weight.shape, generator=generator)
        _resize(layer, weight, layer.bias.data.repeat(factor))
        _resize(following, following.weight.data.repeat(1, factor) / factor, following.bias.data)
    return model
