"""Disaggregation signal-to-noise ratio, D-SNR (Wang & Li §3.2, eq. 1, from Garov et al. [14]).

    D-SNR(θ, X) = max_{W in 𝒲} max_i ||∇_W ℓ(x_i)|| / Σ_{j≠i} ||∇_W ℓ(x_j)||

over the weights 𝒲 of all fully-connected and convolutional layers and the samples of one batch. A model built to
isolate one sample's gradient (Fishing, Curious-style last-layer attacks) makes one term dominate and the ratio
exceed 1; it stays near 0 for benign models and, as Fig. 2 shows, for Robbing the Fed's imprint layer.

The per-sample gradients are those of each sample's loss term inside the batch forward pass (exact also with
batch norm, which couples the samples: :func:`fedleak.fl.per_sample.batch_sample_gradients`), in
:func:`per_sample_gradient_norms`; the loss is the training loss of :func:`fedleak.fl.training.sample_losses`.
"""
from __future__ import annotations

import time
import warnings
from typing import Sequence

import torch
import torch.nn as nn
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from torch.nn.modules.conv import _ConvNd

from fedleak.detection.verdict import Batch, Verdict, gather_samples, working_copy
from fedleak.fl.per_sample import SampleGradients, batch_sample_gradients, couples_samples
from fedleak.fl.training import sample_losses

DEFAULT_THRESHOLD = 1.0


def per_sample_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: Sequence[str], *,
                              chunk_size: int = 16) -> torch.Tensor:
    """||∇_W ℓ(x_i)|| for each sample i and each weight W named in ``weights``: a (batch, len(weights)) tensor.

    Without batch norm in training mode the samples are independent and the norms come from one forward and one
    backward with Opacus's fast gradient clipping hooks (:func:`ghost_norms`: ghost norms of linear layers,
    per-layer gradient samples of the others, one layer at a time); a model those hooks do not support (a layer
    used twice) falls back to the per-sample engine. With batch norm, each sample's loss term is differentiated
    inside the batch forward pass (:func:`fedleak.fl.per_sample.batch_sample_gradients`: all losses' backward
    passes at once, batch times the cost of one), using the batch statistics without updating the running ones.
    """
    if not couples_samples(model):
        try:
            return ghost_norms(model, x, y, weights)
        except NotImplementedError:  # Opacus refuses tied parameters
            grads = SampleGradients(model, weights, chunk_size=chunk_size)(x, y)
            return torch.stack([grads[n].flatten(1).norm(dim=1) for n in weights], dim=1)

    norms = batch_sample_gradients(model, x, y, weights, norms=True, chunk_size=chunk_size)
    return torch.stack([norms[n] for n in weights], dim=1)


def ghost_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: Sequence[str]) -> torch.Tensor:
    """Per-sample gradient norms ``(batch, len(weights))`` of the training loss (:func:`sample_losses`) from
    Opacus's ``GradSampleModuleFastGradientClipping`` (ghost clipping, Li et al. 2022; Bu et al. 2023) on a model
    whose samples do not interact. Only the named weights are differentiated; ``requires_grad`` is restored."""
    parameters = dict(model.named_parameters())
    trainable = {n: p.requires_grad for n, p in parameters.items()}
    for name, parameter in parameters.items():
        parameter.requires_grad_(name in weights)
    hooked = GradSampleModuleFastGradientClipping(model, batch_first=True, loss_reduction="sum", strict=False,
                                                  use_ghost_clipping=True)
    try:
        with warnings.catch_warnings():  # Opacus warns about modules it does not know even when they are frozen
            warnings.simplefilter("ignore")
            sample_losses(model, hooked(x), y).sum().backward()
        return torch.stack([parameters[n]._norm_sample for n in weights], dim=1)
    finally:
        hooked.remove_hooks()
        for name, parameter in parameters.items():
            parameter.requires_grad_(trainable[name])
            parameter.grad = None
            for attribute in ("_norm_sample", "grad_sample", "_forward_counter", "_current_grad_sample"):
                if hasattr(parameter, attribute):
                    delattr(parameter, attribute)


def dsnr_per_layer(norms: torch.Tensor) -> torch.Tensor:
    """Eq. 1 inside the outer max: per layer, max_i n_i / (Σ_j n_j - n_i); infinite when all others are zero."""
    largest = norms.max(dim=0).values
    rest = norms.sum(dim=0) - largest
    return torch.where(rest > 0, largest / rest.clamp_min(torch.finfo(norms.dtype).tiny),
                       torch.where(largest > 0, torch.inf, 0.0))


def weight_names(model: nn.Module) -> list[str]:
    """Names of the weights of all convolutional and fully-connected layers (the set 𝒲 of eq. 1)."""
    return [f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, _ConvNd)) and module.weight is not None and module.weight.requires_grad]


def dsnr_check(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (), *,
               device: str | torch.device = "cpu", batch_size: int = 64, threshold: float = DEFAULT_THRESHOLD,
               seed: int = 0) -> Verdict:
    """Detector: flag when the D-SNR of one local batch of ``batch_size`` samples exceeds ``threshold`` (eq. 1)."""
    start = time.perf_counter()
    model = working_copy(received_model, device).train()
    generator = torch.Generator().manual_seed(seed)
    x, y = gather_samples(batches, batch_size, generator=generator, device=device)
    if len(x) < 2:
        raise ValueError("D-SNR compares samples within a batch; it needs at least 2 local samples")
    names = weight_names(model)
    if not names:
        raise ValueError("D-SNR needs a model with at least one convolutional or fully-connected layer")
    per_layer = dsnr_per_layer(per_sample_gradient_norms(model, x, y, names))
    worst = int(per_layer.argmax())
    score = float(per_layer[worst])
    return Verdict(score > threshold, "dsnr", names[worst].removesuffix(".weight"), "dsnr", score, threshold,
                   time.perf_counter() - start, {"per_layer": dict(zip(names, per_layer.tolist())),
                                                 "batch_size": len(x)})
