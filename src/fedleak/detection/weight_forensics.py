"""Weight forensics: structures in a received model's weights that no initialiser and no training produces.

Every first-contact signature here is read from the weights alone (no local data), with a line set before any
measurement by what a benign model can produce, not fitted; each allows a margin above float round-off, so that an
attacker must move the weights visibly (``fedleak detect-eval --tradeoff`` measures what that costs him):

* :func:`degenerate_rows` counts rows (a linear layer's output unit, a convolution's filter) of which more than
  half the entries are (near-)zero, or whose entries are all (nearly) equal, "near" meaning within
  :data:`NEAR_ZERO` of the initialiser's scale ``1/sqrt(fan_in)``. Initialisers draw every entry from a continuous
  distribution of that scale (an entry that small has probability about 1e-3) and SGD moves every entry by its own
  amount, so a benign model has no such row (threshold 0: one row flags). The manipulations make them: the zeroed
  classifier rows of class and feature fishing (paper 000 Eq. 17), the one-hot kernels of curious kernels and
  input forwarding (paper 000 App. A.1.2, paper 002 App. B), the zero query/value weights of Decepticons (paper 000
  Eq. 19), the silenced layers of model inconsistency and LOKI's one-hot client kernels.
* :func:`parallel_rows` counts rows parallel (cosine above :data:`PARALLEL`) to another row of the same layer of
  fan-in at least :data:`MIN_PARALLEL`. Independent random rows of width ``d`` have cosine of order
  ``1/sqrt(d)``; training keeps them apart. Robbing
  the Fed's imprint measures one function of the input in every row (paper 000 Eq. 16), and so does LOKI's.
* :func:`mirrored_rows` counts rows whose positive entries are one scaled copy of its negative ones: as many
  positive as negative entries (give or take one), and the sorted positive magnitudes a constant multiple of the
  sorted negative ones (relative spread of the ratios below :data:`MIRROR`). An independent draw rarely pairs its
  magnitudes this way (a row of fan-in 9: about 2.5e-4, see "Open world" below), and training moves each entry by
  its own amount. Trap weights (paper 002 Algorithm 1) build every row so: the positives are the negatives times
  ``-s``, shuffled.
* :func:`sign_imbalance` tests the signs of an embedding table's entries, which a zero-mean initialiser draws
  symmetrically and training, whose gradient on an embedding row has no fixed sign, keeps so: the count of
  negative entries is Binomial(n, 1/2) and the score the binomial z-score ``|neg - n/2| / sqrt(n/4)`` of the
  table (at least :data:`MIN_SIGNS` entries); the threshold 6 is a one-in-a-billion tail. The text-embedding
  attack (paper 002 §8) sets a table uniform in (0, 1). Linear and convolution layers are left out: a layer
  reading non-negative inputs (after a ReLU) receives row gradients ``g_i a`` whose entries share one sign, so
  Adam shifts whole rows one way; measured on a VGG-CNN after one FedAvg round, 85% of its first linear layer's
  row sums were negative (z = 7.8), so their signs are not symmetric under training.

Each verdict names the layer; ``details`` lists every layer with a finding.

**Open world.** The premise above ("no initialiser and no training produces them") holds for the models these
lines were set beside, not for ordinary models. On the benign zoo (:mod:`fedleak.benchmarks.benign_zoo`, 70 variants
x 3 clients = 210 checks, ``fedleak detect-eval --quick --open-world``), at the thresholds above, unchanged:
``degenerate_rows`` refuses 18.6% (13 variants: magnitude-pruned MLPs, LeNet and ResNet at 50%/90%, L2-structured
pruning, PEFT-style LoRA whose B starts at zero, a ViT with zero-initialised projections or head, an MLP after 300
Adam steps with L2 1e-2, whose dead ReLU units decay to zero), ``parallel_rows`` 5.7% (Net2Net-widened MLPs with
duplicated units, with and without noise and training, a 90%-pruned LeNet, LoRA's B after Adam steps),
``mirrored_rows`` 2.9% (LoRA's B after 30 Adam steps from zero: Adam's first steps move every entry by nearly the
same +-lr, so a row's magnitudes pair up; and a full-width MobileNetV2 at init, whose ~7,100 depthwise 3x3 filters
hold one mirrored row: a random row of fan-in 9 is mirrored with probability about 2.5e-4, 11-14 of 50,000),
``sign_imbalance`` 0. The first three exceed the 0.01 false-alarm bound and are demoted from the default chain
(:data:`fedleak.detection.first_contact.DEMOTED`); they stay registered, and
:data:`fedleak.detection.first_contact.SIGNATURES` builds the chain with them.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from fedleak.detection.verdict import Batch, Verdict

NEAR_ZERO = 1e-3  # an entry this small relative to the initialiser's scale 1/sqrt(fan_in) counts as zero
MIRROR = 1e-2  # relative spread of |positive| / |negative| sorted magnitudes in a mirrored row
PARALLEL = 1 - 1e-4  # cosine of two rows that are copies up to scale (within about 0.8 degrees)
MIN_PARALLEL = 8  # fan-in below which two random rows may be near-parallel by chance
MIN_SIGNS = 16  # a sign test needs this many entries to mean anything
MIN_MIRROR = 4  # entries of each sign a row needs before a constant ratio means anything
SIGN_THRESHOLD = 6.0  # binomial z-score: a one-in-a-billion tail for a zero-mean initialiser


def weight_rows(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every linear and convolution layer's weight as ``(rows, fan_in)`` (rows = output units or filters), by the
    layer's dotted name; layers with a fan-in of one (a row of one entry is trivially constant) are left out."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, _ConvNd)) and module.weight is not None:
            weight = module.weight.detach().flatten(1)
            if isinstance(module, _ConvNd) and module.transposed:
                weight = module.weight.detach().transpose(0, 1).flatten(1)
            if weight.shape[1] > 1:
                rows.append((name, weight.double()))
    return rows


def _verdict(name: str, statistic: str, findings: dict[str, float], threshold: float, start: float,
             what: str) -> Verdict:
    layer, score = max(findings.items(), key=lambda item: item[1]) if findings else (None, 0.0)
    flagged = score > threshold
    summary = (f"{name}: {score:.4g} {what}{f' in {layer}' if layer else ''} "
               f"({'>' if flagged else '<='} threshold {threshold:.4g})")
    return Verdict(flagged, name, layer, statistic, float(score), threshold, time.perf_counter() - start,
                   {"summary": summary, "per_layer": {k: v for k, v in findings.items() if v > 0}})


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"the received model must be an nn.Module, got {type(model).__name__}")


def degenerate_rows(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                    *, device: str | torch.device = "cpu", threshold: float = 0.0) -> Verdict:
    """Detector: the number of rows, in the layer with most, that are more than half (near-)zero or (nearly)
    constant (module docstring); flags above ``threshold`` (0: any such row). Demoted: 18.6% false alarms on the
    benign zoo (pruned, LoRA, zero-init, Adam + L2 models)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, weight in weight_rows(received_model):
        scale = NEAR_ZERO / math.sqrt(weight.shape[1])
        zero_heavy = (weight.abs() <= scale).double().mean(dim=1) > 0.5
        constant = weight.amax(dim=1) - weight.amin(dim=1) <= scale
        findings[name] = float((zero_heavy | constant).sum())
    return _verdict("degenerate_rows", "zero_or_constant_rows", findings, threshold, start,
                    "rows more than half zero or constant")


def parallel_rows(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                  *, device: str | torch.device = "cpu", threshold: float = 0.0) -> Verdict:
    """Detector: the number of non-zero rows, in the layer with most, parallel (cosine above :data:`PARALLEL`) to
    another row of that layer (module docstring); flags above ``threshold`` (0: any pair). Demoted: 5.7% false
    alarms on the benign zoo (widened nets with duplicated units)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, weight in weight_rows(received_model):
        if weight.shape[1] < MIN_PARALLEL:
            continue
        weight = weight.to(device)
        norm = weight.norm(dim=1)
        live = norm > 0
        if int(live.sum()) < 2:
            continue
        direction = weight[live] / norm[live, None]
        cosine = direction @ direction.T
        cosine.fill_diagonal_(0.0)
        findings[name] = float((cosine > PARALLEL).any(dim=1).sum())
    return _verdict("parallel_rows", "parallel_rows", findings, threshold, start, "rows parallel to another row")


def mirrored_rows(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                  *, device: str | torch.device = "cpu", threshold: float = 0.0) -> Verdict:
    """Detector: the number of rows, in the layer with most, whose positive magnitudes are a constant multiple of
    its negative ones (module docstring); flags above ``threshold`` (0: any such row). Demoted: 2.9% false alarms
    on the benign zoo (a LoRA adapter after a few Adam steps, a full-width MobileNetV2 at init)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, weight in weight_rows(received_model):
        positive, negative = (weight > 0).sum(dim=1), (weight < 0).sum(dim=1)
        candidates = (((positive - negative).abs() <= 1) & (positive.minimum(negative) >= MIN_MIRROR)
                      ).nonzero().flatten()
        count = 0
        for row in weight[candidates]:
            up = row[row > 0].sort(descending=True).values
            down = (-row[row < 0]).sort(descending=True).values
            k = min(len(up), len(down)) - 1  # the smallest magnitude of the larger side may be a leftover entry
            ratio = up[:k] / down[:k]
            count += int((ratio.max() - ratio.min()) <= MIRROR * ratio.median())
        findings[name] = float(count)
    return _verdict("mirrored_rows", "mirrored_rows", findings, threshold, start,
                    "rows whose positive weights mirror the negative ones")


def sign_imbalance(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                   *, device: str | torch.device = "cpu", threshold: float = SIGN_THRESHOLD) -> Verdict:
    """Detector: the largest binomial z-score of the negative entries of an embedding table (module docstring);
    flags above ``threshold``. On the benign zoo: no false alarm (it reads embedding tables only)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, module in received_model.named_modules():
        if not isinstance(module, nn.Embedding):
            continue
        values = module.weight.detach().flatten()
        values = values[values != 0]
        n = len(values)
        if n < MIN_SIGNS:
            continue
        negative = float((values < 0).sum())
        findings[name] = abs(negative - n / 2) / math.sqrt(n / 4)
    return _verdict("sign_imbalance", "sign_z", findings, threshold, start, "binomial z of the embedding signs")
