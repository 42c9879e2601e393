"""Convolution-filter ratio check (Wang & Li §3.2, after Garov et al. [14]).

For each filter of the first convolution, the ratio of its largest absolute entry to the sum of the absolute
values of all its other entries. A filter that forwards its input unaltered (an identity or scaled-identity kernel,
Boenisch et al. §7) has a single non-zero entry and an infinite ratio; learned filters spread their weight and stay
far below 1. The model's score is the largest ratio over filters; it is flagged above 1.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn as nn

from fedleak.detection.verdict import Batch, Verdict, working_copy
from fedleak.models.anatomy import trace

DEFAULT_THRESHOLD = 1.0


def filter_ratios(weight: torch.Tensor) -> torch.Tensor:
    """Per output filter of a convolution weight ``(out, in, *kernel)``: max |w| / (sum |w| - max |w|)."""
    flat = weight.detach().abs().flatten(1)
    largest = flat.max(dim=1).values
    rest = flat.sum(dim=1) - largest
    return torch.where(rest > 0, largest / rest.clamp_min(torch.finfo(flat.dtype).tiny),
                       torch.where(largest > 0, torch.inf, 0.0))


def first_conv(model: nn.Module, batches: Sequence[Batch] = ()) -> str | None:
    """Name of the first convolution a forward pass calls, traced on the first batch (on an input of
    ``model.input_shape`` when no batch is given), or None when the model has none."""
    example = batches[0][0][:2].to(next(model.parameters()).device) if batches else None
    convs = trace(model, example).layers("conv")
    return convs[0].name if convs else None


def filter_ratio_check(received_model: nn.Module, local_model: nn.Module | None = None,
                       batches: Sequence[Batch] = (), *, device: str | torch.device = "cpu",
                       threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """Detector: flag when a filter of the first convolution has ratio above ``threshold`` (§3.2)."""
    start = time.perf_counter()
    model = working_copy(received_model, device)
    name = first_conv(model, batches)
    if name is None:
        return Verdict(False, "filter_ratio", None, None, 0.0, threshold, time.perf_counter() - start,
                       {"note": "the model has no convolution"})
    ratios = filter_ratios(model.get_submodule(name).weight)
    worst = int(ratios.argmax())
    score = float(ratios[worst])
    return Verdict(score > threshold, "filter_ratio", name, "filter_ratio", score, threshold,
                   time.perf_counter() - start, {"filter": worst, "ratios": ratios.tolist()})
