"""Weight forensics: structures in a received model's weights that no initialiser and no training produces.

Every first-contact signature here is read from the weights alone (no local data), with a line set before any
measurement by what a benign model can produce, not fitted:

* :func:`degenerate_rows` counts rows (a linear layer's output unit, a convolution's filter) of which more than
  half the entries are exactly zero, or whose entries are all equal. Initialisers draw every entry from a
  continuous distribution and SGD moves every entry by a continuous amount, so an exact zero has probability zero
  and a benign model has no such row (threshold 0: one row flags). The manipulations make them: the zeroed
  classifier rows of class and feature fishing (paper 000 Eq. 17), the one-hot kernels of curious kernels and
  input forwarding (paper 000 App. A.1.2, paper 002 App. B), the zero query/value weights of Decepticons (paper 000
  Eq. 19), the silenced layers of model inconsistency and LOKI's one-hot client kernels.
* :func:`parallel_rows` counts rows exactly parallel (cosine above ``1 - 1e-6``) to another row of the same layer.
  Independent random rows of width ``d`` have cosine of order ``1/sqrt(d)``; training keeps them apart. Robbing
  the Fed's imprint measures one function of the input in every row (paper 000 Eq. 16), and so does LOKI's.
* :func:`sign_imbalance` tests the signs a benign model draws symmetrically: the sign of each row's sum in a
  linear or convolution layer, and the sign of each entry of an embedding table. Under a zero-mean initialiser
  either sign has probability 1/2, so the count of negative ones is Binomial(n, 1/2); the score is the largest
  binomial z-score ``|neg - n/2| / sqrt(n/4)`` over the layers with at least :data:`MIN_SIGNS` of them, and the
  threshold 6 is a one-in-a-billion tail. Trap weights (paper 002 Algorithm 1) give every row a negative sum
  (``(s - 1) Σ|w_-|``), and the text-embedding attack (paper 002 §8) a table uniform in (0, 1).

Each verdict names the layer; ``details`` lists every layer with a finding.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from fedleak.detection.verdict import Batch, Verdict

PARALLEL = 1 - 1e-6  # cosine of two rows that are copies up to scale (float32 round-off)
MIN_SIGNS = 16  # a sign test needs this many rows (or entries) to mean anything
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
    """Detector: the number of rows, in the layer with most, that are more than half exact zeros or constant
    (module docstring); flags above ``threshold`` (0: any such row)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, weight in weight_rows(received_model):
        zero_heavy = (weight == 0).double().mean(dim=1) > 0.5
        constant = weight.amax(dim=1) == weight.amin(dim=1)
        findings[name] = float((zero_heavy | constant).sum())
    return _verdict("degenerate_rows", "zero_or_constant_rows", findings, threshold, start,
                    "rows more than half zero or constant")


def parallel_rows(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                  *, device: str | torch.device = "cpu", threshold: float = 0.0) -> Verdict:
    """Detector: the number of non-zero rows, in the layer with most, exactly parallel to another row of that layer
    (module docstring); flags above ``threshold`` (0: any pair)."""
    start = time.perf_counter()
    _check_model(received_model)
    findings = {}
    for name, weight in weight_rows(received_model):
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


def sign_imbalance(received_model: nn.Module, local_model: nn.Module | None = None, batches: Sequence[Batch] = (),
                   *, device: str | torch.device = "cpu", threshold: float = SIGN_THRESHOLD) -> Verdict:
    """Detector: the largest binomial z-score of the negative row sums of a linear/convolution layer or the
    negative entries of an embedding table (module docstring); flags above ``threshold``."""
    start = time.perf_counter()
    _check_model(received_model)
    signs = [(name, weight.sum(dim=1)) for name, weight in weight_rows(received_model)]
    signs += [(name, module.weight.detach().flatten()) for name, module in received_model.named_modules()
              if isinstance(module, nn.Embedding)]
    findings = {}
    for name, values in signs:
        values = values[values != 0]
        n = len(values)
        if n < MIN_SIGNS:
            continue
        negative = float((values < 0).sum())
        findings[name] = abs(negative - n / 2) / math.sqrt(n / 4)
    return _verdict("sign_imbalance", "sign_z", findings, threshold, start, "binomial z of the signs")
