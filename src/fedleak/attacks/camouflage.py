"""How an attacker who knows the client's detectors disguises a manipulated model (issue 21; the detectors'
thresholds are those of :mod:`fedleak.detection.weight_forensics`).

A camouflage is ``camouflage(sent, honest, generator, public) -> model``: it rewrites ``sent`` (the manipulated
model; ``honest`` the model it was made from) with draws from ``generator`` and, where it needs them, the server's
``public`` data. :data:`CAMOUFLAGES` names them: Gaussian noise at a fraction of the weights' std on every changed
parameter, or tuned per layer; positive weights drawn independently instead of mirrored; manipulated rows mixed
with benign ones; their combinations; and an imprint design whose rows are neither parallel, constant nor mirrored
(:func:`paired_bins`, for Robbing the Fed). :data:`ONLY` restricts a camouflage to the manipulations it is
designed for.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn as nn

NOISE = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # half-decades from 1e-4 to 1e-1: the attacker searches them


def _changed(sent: nn.Module, honest: nn.Module):
    """(name, parameter of ``sent``, the honest one or None) for every parameter the manipulation changed."""
    before = dict(honest.named_parameters())
    for name, parameter in sent.named_parameters():
        old = before.get(name)
        if old is None or old.shape != parameter.shape or not torch.equal(old, parameter):
            yield name, parameter, old if old is not None and old.shape == parameter.shape else None


def noise(level: float) -> Callable:
    """Gaussian noise of ``level`` x the weights' std: the sent parameter's, or where it is constant (an imprint)
    the honest one's, or else the initialiser's scale ``1/sqrt(fan_in)``."""
    @torch.no_grad()
    def apply(sent: nn.Module, honest: nn.Module, generator: torch.Generator, public=None) -> nn.Module:
        for _, parameter, old in _changed(sent, honest):
            std = 0.0
            for reference in (parameter, old):
                if std == 0 and reference is not None and reference.numel() > 1:
                    std = float(reference.std())
            if std == 0:
                std = 1.0 / math.sqrt(max(1, parameter[0].numel() if parameter.dim() > 1 else parameter.numel()))
            draw = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(draw.to(parameter.device) * level * std)
        return sent
    return apply


def split_noise(first: float, rest: float) -> Callable:
    """Noise tuned per layer, as an attacker who knows the thresholds would: ``first`` x std on the first changed
    matrix (the extraction layer: the leak needs it nearly intact) and its bias, ``rest`` x std elsewhere (e.g. an
    imprint's equal columns in the next layer, whose rows would otherwise be parallel)."""
    light, heavy = noise(first), noise(rest)

    def apply(sent: nn.Module, honest: nn.Module, generator: torch.Generator, public=None) -> nn.Module:
        changed = [name for name, p, _ in _changed(sent, honest) if p.dim() >= 2]
        if not changed:
            return heavy(sent, honest, generator)
        layer = changed[0].rsplit(".", 1)[0]
        heavy_sent = heavy(copy.deepcopy(sent), honest, generator)
        light(sent, honest, generator)
        with torch.no_grad():
            for name, parameter in heavy_sent.named_parameters():
                if name.rsplit(".", 1)[0] == layer:
                    parameter.copy_(sent.get_parameter(name))
        return heavy_sent

    return apply


@torch.no_grad()
def independent(sent: nn.Module, honest: nn.Module, generator: torch.Generator, public=None) -> nn.Module:
    """Positive weights drawn independently: every changed matrix's positive entries shuffled across the matrix."""
    for _, parameter, _ in _changed(sent, honest):
        if parameter.dim() >= 2:
            where = (parameter > 0).nonzero(as_tuple=True)
            values = parameter[where]
            parameter[where] = values[torch.randperm(len(values), generator=generator).to(values.device)]
    return sent


@torch.no_grad()
def mixed(sent: nn.Module, honest: nn.Module, generator: torch.Generator, public=None) -> nn.Module:
    """Manipulated rows mixed with benign ones: half the rows of every changed matrix (and their bias entries)
    reset to the honest model's."""
    changed = dict((name, (p, old)) for name, p, old in _changed(sent, honest))
    for name, (parameter, old) in changed.items():
        if parameter.dim() >= 2 and old is not None:
            rows = torch.randperm(len(parameter), generator=generator)[: len(parameter) // 2].to(parameter.device)
            parameter[rows] = old[rows]
            bias = changed.get(name.rsplit(".", 1)[0] + ".bias")
            if bias is not None and bias[1] is not None:
                bias[0][rows] = bias[1][rows]
    return sent


def _then(*steps: Callable) -> Callable:
    def apply(sent, honest, generator, public=None):
        for step in steps:
            sent = step(sent, honest, generator, public)
        return sent
    return apply


@torch.no_grad()
def paired_bins(sent: nn.Module, honest: nn.Module, generator: torch.Generator, public=None) -> nn.Module:
    """An imprint with no parallel, constant or mirrored rows (for Robbing the Fed's ``reuse`` variant): rows 2k and
    2k+1 of the imprint layer keep the honest row k's direction, so each pair measures its own function ``h_k``;
    the odd row differs from the even one only on the inputs the public data never lights (its 10% least varying
    features: border pixels), so the rows are not parallel but light the same samples; the pair's biases cut
    ``h_k`` at consecutive quantiles of the public data (Fowl et al.'s bins, one per pair); the next layer's
    columns 2k+1 copy columns 2k (equal ``dL/dy`` within a pair, honest otherwise). The difference of a pair's
    gradients then holds the samples in its bin alone, which :func:`extract_imprint` reads."""
    if public is None:
        raise ValueError("the paired-bins imprint sets its cuts on the server's public data; none was given")
    matrices = [p for _, p, _ in _changed(sent, honest) if p.dim() == 2]
    layers = [m for m in sent.modules() if isinstance(m, nn.Linear)]
    first = next(m for m in layers if any(m.weight is p for p in matrices))
    following = layers[layers.index(first) + 1]
    base = dict(honest.named_modules())[next(n for n, m in sent.named_modules() if m is first)]
    x = public.flatten(1).to(first.weight)
    pairs = first.out_features // 2
    rows = base.weight[:pairs].clone()
    quiet = x.var(dim=0).argsort()[: max(1, x.shape[1] // 10)]
    twin = rows.clone()
    twin[:, quiet] += rows.norm(dim=1, keepdim=True) * torch.randn(pairs, len(quiet), generator=generator).to(rows)
    h = x @ rows.T  # (public samples, pairs)
    levels = torch.randperm(pairs, generator=generator).to(h) / pairs  # one bin of mass 1/pairs per pair
    low = torch.quantile(h, levels.clamp(0, 1), dim=0).diagonal()
    high = torch.quantile(h, (levels + 1 / pairs).clamp(0, 1), dim=0).diagonal()
    first.weight[0:2 * pairs:2], first.weight[1:2 * pairs:2] = rows, twin
    first.bias[0:2 * pairs:2], first.bias[1:2 * pairs:2] = -low, -high
    columns = dict(honest.named_modules())[next(n for n, m in sent.named_modules() if m is following)].weight
    following.weight.copy_(columns)
    following.weight[:, 1:2 * pairs:2] = columns[:, 0:2 * pairs:2]
    return sent


CAMOUFLAGES: dict[str, Callable] = {"none": _then(), "independent": independent, "mixed": mixed,
                                    **{f"noise={n:g}": noise(n) for n in NOISE},
                                    **{f"independent+noise={n:g}": _then(independent, noise(n)) for n in NOISE},
                                    **{f"mixed+noise={n:g}": _then(mixed, noise(n)) for n in NOISE},
                                    **{f"noise={n:g},rest={NOISE[-1]:g}": split_noise(n, NOISE[-1]) for n in NOISE[:-1]},
                                    "paired_bins": paired_bins}
ONLY = {"paired_bins": ("robbing_the_fed",)}  # camouflages that rewrite one manipulation's own layers


def initialiser_noise(sent: nn.Module, original: nn.Module, epsilon: float, generator: torch.Generator) -> nn.Module:
    """The adaptive attacker's stealth knob of ``fedleak detect-eval --tradeoff``: ``sent`` with noise ``epsilon / sqrt(fan_in)`` on every entry of every parameter that differs from
    ``original`` (parameters the manipulation added count as changed); the model itself when epsilon is 0."""
    if epsilon == 0:
        return sent
    before = dict(original.named_parameters())
    with torch.no_grad():
        for name, parameter in sent.named_parameters():
            old = before.get(name)
            if old is not None and old.shape == parameter.shape and torch.equal(old, parameter):
                continue
            owner = sent.get_submodule(name.rsplit(".", 1)[0]) if "." in name else sent
            weight = getattr(owner, "weight", parameter)
            fan_in = max(1, weight[0].numel()) if weight.dim() > 1 else max(1, weight.numel())
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(noise.to(parameter.device) * epsilon / math.sqrt(fan_in))
    return sent


def interpolate(honest: nn.Module, seer: nn.Module, share: float) -> nn.Module:
    """A copy of ``seer`` holding ``(1 - share) theta_honest + share theta_seer`` in every floating-point entry of
    its state (weights and batch-norm running statistics): SEER's own stealth knob."""
    mixed = copy.deepcopy(seer)
    before = honest.state_dict()
    mixed.load_state_dict({k: torch.lerp(before[k], v, share) if v.is_floating_point() else v
                           for k, v in seer.state_dict().items()})
    return mixed
