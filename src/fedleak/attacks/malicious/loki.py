"""LOKI (Zhao et al., S&P 2024; paper 000 §3.3, ref. [49]): large-scale reconstruction through secure aggregation
and FedAvg by giving each client its own first convolution.

The server's architecture puts a LOKI block in front of the model: a 3x3 convolution with ``N * C`` output
channels (``N`` client slots, ``C`` input channels), ReLU, and an imprint layer of ``K`` bins read through
Hardtanh(0, 1). Client ``z`` receives kernels that are zero except scaled one-hot centres on its own channels
``[zC, (z+1)C)``, so its input lands, scaled by ``s``, in its own column block of the imprint layer and nowhere
else. Every imprint row measures the mean brightness ``h`` of that block (Robbing the Fed's linear function,
paper 000 App. A.1.1 Eq. 16), with weight ``1 / (s C H W w_j)`` and bias ``-e_j / w_j`` for the bin
``[e_j, e_j + w_j)``: after Hardtanh a row passes a gradient only for the inputs whose ``h`` falls in its bin (the
rows below saturate at 1, those above stay at 0). A row's weight update in block ``z`` is then ``-lr dL/dy s x``
summed over client ``z``'s inputs in that bin, through any number of local SGD steps, and no other client writes
into that block: the secure aggregate holds every client's imprints side by side.

Readout per client block and row: the update up to its unknown factor ``dL/dy``, scaled so that its mean
brightness is the bin's centre, then snapped to the data's quantisation (the brightest pixel is the level
``k / levels`` that puts the whole image closest to the grid).
The bias update is not used: it mixes the clients sharing a bin, and in FedAvg a float32 bias of size
``e_j / w_j`` cannot resolve its small change. A candidate is declared a single input when it lies on the
quantisation grid (an overlay of several inputs does not).

The block's output is ``x + mean_j(Hardtanh(...))`` (the imprint block of :mod:`robbing_the_fed`), so the rest of
the model still sees the image and every row receives the same ``dL/dy``. LOKI assumes plain SGD local training
(an adaptive optimiser such as Adam rescales every entry of the update and destroys the imprint).
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from dataclasses import dataclass, replace
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from fedleak.attacks.analytic import NEGLIGIBLE, individual_rows, layer_gradients
from fedleak.attacks.base import AttackContext, Observed, Reconstruction
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.checks import NotApplicable, check_levels, check_number
from fedleak.models.insertion import insert_before_input

BLOCK = "loki"  # the name of the LOKI block in front of the model
SNAP_WINDOW = 16  # levels tried on either side of the brightest entry's nearest level
ON_GRID = 1e-2  # mean distance to the grid, in levels, of a candidate that is one quantised input


class LokiBlock(nn.Module):
    """The attacker's architecture in front of the model: conv (``C -> num_clients * C``, 3x3), ReLU, imprint
    layer of ``num_bins`` rows, Hardtanh(0, 1); the output is the input plus the mean of the rows' activations."""

    def __init__(self, input_shape: tuple[int, ...], num_clients: int, num_bins: int):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"LOKI's convolution reads images (C, H, W); got inputs of shape {tuple(input_shape)}")
        check_number("LOKI num_bins", num_bins, low=3, integer=True)  # two inner edges at least
        channels, height, width = input_shape
        self.input_shape, self.num_clients = tuple(input_shape), num_clients
        self.conv = nn.Conv2d(channels, num_clients * channels, 3, padding=1)
        self.imprint = nn.Linear(num_clients * channels * height * width, num_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        active = F.hardtanh(self.imprint(F.relu(self.conv(x)).flatten(1)), 0.0, 1.0)
        return x + active.mean(dim=1).view(-1, *([1] * (x.dim() - 1)))


@dataclass
class LokiConfig:
    """``num_clients`` client slots of the convolution (default: the highest targeted client id + 1, when the
    block is inserted); ``num_bins`` imprint rows K; ``feature_mean`` / ``feature_std`` the server's prior of the
    mean brightness (default: from its public data, see :func:`brightness_prior`); ``conv_scale`` s, the one-hot
    kernel value (large, so that a float32 update resolves the imprint); ``levels`` the data's quantisation."""

    input_shape: tuple[int, ...]
    num_clients: int | None = None
    num_bins: int = 512
    feature_mean: float | None = None
    feature_std: float | None = None
    conv_scale: float = 1000.0
    levels: int | None = 255

    def __post_init__(self):
        if self.num_clients is not None:
            check_number("LOKI num_clients", self.num_clients, low=1, integer=True)
        check_number("LOKI num_bins", self.num_bins, low=3, integer=True)
        check_number("LOKI conv_scale", self.conv_scale, low=0, low_open=True)
        if self.feature_mean is not None:
            check_number("LOKI feature_mean", self.feature_mean)
        if self.feature_std is not None:
            check_number("LOKI feature_std", self.feature_std, low=0, low_open=True)
        check_levels("LOKI", self.levels)


@dataclass(frozen=True)
class LokiSecret:
    """The imprint layer's name, the bin edges ``e_0 .. e_K``, the slot of each targeted client and the input
    shape and quantisation: all the server needs to read each client's block of the aggregate."""

    layer: str
    edges: torch.Tensor
    clients: tuple[int, ...]
    input_shape: tuple[int, ...]
    levels: int | None


def bin_edges(num_bins: int, mean: float, std: float) -> torch.Tensor:
    """``e_0 < .. < e_K``: equal-mass Gaussian quantiles of the brightness prior inside, wide outer bins."""
    mass = torch.arange(1, num_bins, dtype=torch.float64) / num_bins
    inner = mean + std * torch.special.ndtri(mass)
    outer = torch.tensor([mean - 100.0 * std, mean + 100.0 * std], dtype=torch.float64)
    return torch.cat([outer[:1], inner, outer[1:]])


def with_loki_block(model: nn.Module, input_shape: tuple[int, ...], num_clients: int, num_bins: int = 512
                    ) -> nn.Module:
    """A copy of ``model`` (any ``nn.Module`` that reads images) with a freshly initialised :class:`LokiBlock` in
    front (:func:`fedleak.models.insertion.insert_before_input`): the architecture the LOKI server chooses, to build
    a federation's global model from (every round's update then has the same keys as the global model)."""
    if len(input_shape) != 3:
        raise NotApplicable(f"LOKI's convolution reads images (C, H, W); this model's inputs have shape "
                            f"{tuple(input_shape)}")
    model = copy.deepcopy(model)
    block = LokiBlock(input_shape, num_clients, num_bins)
    parameter = next(model.parameters(), None)
    return insert_before_input(model, BLOCK, block if parameter is None else block.to(parameter.device))


def find_block(model: nn.Module) -> tuple[str, LokiBlock] | None:
    """The name and module of the model's LOKI block, if it has one."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, LokiBlock)), None)


@torch.no_grad()
def _arm(block: LokiBlock, slot: int, edges: torch.Tensor, scale: float) -> None:
    """Client ``slot``'s kernels and the imprint rows (module docstring)."""
    channels = block.conv.in_channels
    features = math.prod(block.input_shape)
    block.conv.weight.zero_()
    block.conv.bias.zero_()
    for c in range(channels):
        block.conv.weight[slot * channels + c, c, 1, 1] = scale
    widths = edges[1:] - edges[:-1]
    weight = (1.0 / (scale * features * widths)).to(block.imprint.weight)
    block.imprint.weight.copy_(weight.unsqueeze(1).expand_as(block.imprint.weight))
    block.imprint.bias.copy_((-edges[:-1] / widths).to(block.imprint.bias))


class LokiAttack:
    """LOKI (module docstring): ``prepare`` sends every targeted client its own kernels, ``reconstruct`` reads
    every client's block of each observed update (the secure aggregate, or each client's own)."""

    name = "loki"

    def __init__(self, **options):
        self.options = options

    def config(self, context: AttackContext) -> LokiConfig:
        config = LokiConfig(context.input_shape, **self.options)
        if config.feature_mean is None or config.feature_std is None:
            if context.public is None:
                raise ValueError("LOKI's bins need the server's brightness prior: pass feature_mean and "
                                 "feature_std, or public data")
            mean, std = brightness_prior(context.public)
            config = replace(config, feature_mean=config.feature_mean if config.feature_mean is not None else mean,
                             feature_std=config.feature_std if config.feature_std is not None else std)
        return config

    def prepare(self, model: nn.Module, context: AttackContext) -> tuple[dict[int, nn.Module], LokiSecret]:
        """One model per targeted client (``context.clients``; client id = slot), from ``model`` carrying a LOKI
        block (inserted here when it has none)."""
        config = self.config(context)
        if not context.clients:
            raise ValueError("LOKI prepares one model per targeted client; the context names none")
        found = find_block(model)
        if found is None:
            slots = config.num_clients or max(context.clients) + 1
            model = with_loki_block(model, config.input_shape, slots, config.num_bins)
            found = find_block(model)
        name, block = found
        if config.num_clients is not None and config.num_clients != block.num_clients:
            raise ValueError(f"the model's LOKI block has {block.num_clients} client slots, not num_clients="
                             f"{config.num_clients}")
        if block.input_shape != config.input_shape:
            raise ValueError(f"the LOKI block reads inputs {block.input_shape}, the data has {config.input_shape}")
        too_high = [c for c in context.clients if not 0 <= c < block.num_clients]
        if too_high:
            raise ValueError(f"the LOKI block has {block.num_clients} client slots; clients {too_high} have none")
        edges = bin_edges(block.imprint.out_features, config.feature_mean, config.feature_std)
        sent = {}
        for client in context.clients:
            own = copy.deepcopy(model)
            _arm(own.get_submodule(name), client, edges, config.conv_scale)
            sent[client] = own
        return sent, LokiSecret(f"{name}.imprint", edges.float(), context.clients, config.input_shape, config.levels)

    def reconstruct(self, observed: Observed, secret: LokiSecret, knowledge=None, *,
                    device: str | torch.device = "cpu") -> Reconstruction:
        parts = [extract_loki(observed.row(i), secret, device=device) for i in range(len(observed.sources))]
        return Reconstruction.concat(parts)


def loki(**options) -> LokiAttack:
    """LOKI: each client its own first-convolution kernels, every client's images read from the secure aggregate
    of FedAvg updates (Zhao et al., S&P 2024)."""
    return LokiAttack(**options)


loki.__signature__ = inspect.Signature([  # the registry reads the options from the signature
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
    for f in dataclasses.fields(LokiConfig) if f.name != "input_shape"])


def snap_to_grid(candidates: torch.Tensor, levels: int, window: int = SNAP_WINDOW) -> torch.Tensor:
    """Each candidate (R, P) rescaled so that its brightest entry is the level ``k / levels``, of the
    ``2 window + 1`` levels around the nearest one, that puts the whole candidate on the grid (mean distance at
    most ``ON_GRID`` levels): the bin's brightness fixes the scale only to a bin width, which for a dark image can
    be a few levels off. A candidate that no level puts on the grid is returned unchanged."""
    brightest = candidates.amax(dim=1).clamp_min(torch.finfo(candidates.dtype).tiny)
    nearest = (brightest * levels).round()
    best_off = torch.full_like(brightest, float("inf"))
    best_scale = torch.ones_like(brightest)
    for step in range(-window, window + 1):
        scale = (nearest + step).clamp_min(1) / levels / brightest
        grid = candidates * (scale * levels).unsqueeze(1)
        off = (grid - grid.round()).abs().mean(dim=1)
        better = off < best_off
        best_off, best_scale = torch.where(better, off, best_off), torch.where(better, scale, best_scale)
    on_grid = best_off <= ON_GRID  # an overlay of several inputs fits no level: it keeps the bin's scale
    return candidates * torch.where(on_grid, best_scale, torch.ones_like(best_scale)).unsqueeze(1)


def extract_loki(update: Mapping[str, torch.Tensor], secret: LokiSecret, *, device=None) -> Reconstruction:
    """Every targeted client's imprints from one update: per client block, each row that changed, scaled to its
    bin's brightness and snapped to the quantisation grid (module docstring)."""
    weight, _ = layer_gradients(update, secret.layer, device=device)
    features = math.prod(secret.input_shape)
    edges = secret.edges.to(weight.device, weight.dtype)
    inner = edges[1:-1]
    centres = ((edges[:-1] + edges[1:]) / 2).clamp(2 * inner[0] - inner[1], 2 * inner[-1] - inner[-2])
    inputs, rows, clients = [], [], []
    for client in secret.clients:
        block = weight[:, client * features:(client + 1) * features]
        size = block.abs().amax(dim=1)
        changed = (size > NEGLIGIBLE * size.max()).nonzero().flatten()  # none when the block is all zero
        imprints = block[changed]
        candidates = imprints * (centres[changed] / imprints.mean(dim=1)).unsqueeze(1)
        if secret.levels is not None and len(candidates):
            candidates = snap_to_grid(candidates, secret.levels)
        inputs.append(candidates.view(-1, *secret.input_shape))
        rows.append(changed)
        clients.append(torch.full_like(changed, client))
    inputs = torch.cat(inputs)
    return Reconstruction(inputs, declared=individual_rows(inputs, levels=secret.levels),
                          meta={"rows": torch.cat(rows), "client": torch.cat(clients)},
                          info={"num_rows": len(weight) * len(secret.clients)})
