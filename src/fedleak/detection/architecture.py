"""Strict architecture check of a received model against the client's own architecture (Wang & Li §3.1).

An inserted layer (the imprint layer of Robbing the Fed, a first fully-connected layer in front of a CNN) shows up
as state-dict keys the client's architecture does not have; a resized layer as a shape mismatch. Both are rejected
with the offending names, as are parameters holding NaN or Inf.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch
import torch.nn as nn

from fedleak.detection.verdict import Batch, Verdict

State = Mapping[str, torch.Tensor]


class ArchitectureMismatch(ValueError):
    """A received model whose state does not match the local architecture; the message names the keys."""

    def __init__(self, report: "ArchitectureReport"):
        self.report = report
        super().__init__(f"received model does not match the local architecture: {report.describe()}")


@dataclass
class ArchitectureReport:
    """Keys the received state has and the local one lacks (``extra``), the reverse (``missing``), tensors of
    another shape or dtype (``reshaped``/``retyped``: name -> (received, expected)) and non-finite tensors."""

    extra: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    reshaped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    nonfinite: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.extra or self.missing or self.reshaped or self.retyped or self.nonfinite)

    def offending(self) -> list[str]:
        """Every offending key, in the order extra, missing, reshaped, retyped, non-finite."""
        return [*self.extra, *self.missing, *self.reshaped, *self.retyped, *self.nonfinite]

    def describe(self) -> str:
        parts = []
        if self.extra:
            parts.append(f"extra keys {self.extra}")
        if self.missing:
            parts.append(f"missing keys {self.missing}")
        if self.reshaped:
            parts.append("reshaped " + ", ".join(f"{k}: {tuple(a)} instead of {tuple(b)}"
                                                 for k, (a, b) in self.reshaped.items()))
        if self.retyped:
            parts.append("retyped " + ", ".join(f"{k}: {a} instead of {b}" for k, (a, b) in self.retyped.items()))
        if self.nonfinite:
            parts.append(f"NaN/Inf in {self.nonfinite}")
        return "; ".join(parts) if parts else "matches"

    def to_dict(self) -> dict:
        return {"extra": self.extra, "missing": self.missing,
                "reshaped": {k: [list(a), list(b)] for k, (a, b) in self.reshaped.items()},
                "retyped": {k: list(v) for k, v in self.retyped.items()}, "nonfinite": self.nonfinite}


def state_of(model_or_state: nn.Module | State) -> State:
    """The state dict of a module, or the mapping itself."""
    if isinstance(model_or_state, nn.Module):
        return model_or_state.state_dict()
    if isinstance(model_or_state, Mapping):
        return model_or_state
    raise TypeError(f"expected an nn.Module or a state dict, got {type(model_or_state).__name__}")


def compare_states(received: nn.Module | State, local: nn.Module | State) -> ArchitectureReport:
    """Compare ``received`` with ``local`` key by key, shape by shape and dtype by dtype; find NaN/Inf values."""
    got, want = state_of(received), state_of(local)
    report = ArchitectureReport(extra=[k for k in got if k not in want], missing=[k for k in want if k not in got])
    floating = []
    for key, tensor in got.items():
        if not isinstance(tensor, torch.Tensor):
            report.retyped[key] = (type(tensor).__name__, "Tensor")
            continue
        if key in want:
            expected = want[key]
            if tuple(tensor.shape) != tuple(expected.shape):
                report.reshaped[key] = (tuple(tensor.shape), tuple(expected.shape))
            elif tensor.dtype != expected.dtype:
                report.retyped[key] = (str(tensor.dtype), str(expected.dtype))
        if tensor.is_floating_point() or tensor.is_complex():
            floating.append(key)
    finite = _all_finite([got[k] for k in floating])
    report.nonfinite = [k for k, ok in zip(floating, finite) if not ok]
    return report


def _all_finite(tensors: list[torch.Tensor]) -> list[bool]:
    """Per tensor, whether every entry is finite (one host transfer for all of them)."""
    if not tensors:
        return []
    flags = torch.stack([torch.isfinite(t.detach()).all().to("cpu", non_blocking=True) for t in tensors])
    return flags.tolist()


def require_matching_architecture(received: nn.Module | State, local: nn.Module | State) -> None:
    """Raise :class:`ArchitectureMismatch` naming every offending key unless ``received`` matches ``local``."""
    report = compare_states(received, local)
    if not report.ok:
        raise ArchitectureMismatch(report)


def architecture_check(received_model: nn.Module, local_model: nn.Module, batches: Sequence[Batch] = (), *,
                       device: str | torch.device = "cpu") -> Verdict:
    """Detector: flag a received model whose state differs from the local architecture or holds NaN/Inf (§3.1).

    The score is the number of offending tensors (threshold 0); ``layer`` names the first one.
    """
    start = time.perf_counter()
    report = compare_states(received_model, local_model)
    offending = report.offending()
    return Verdict(flagged=not report.ok, detector="architecture", layer=offending[0] if offending else None,
                   statistic=_statistic(report), score=float(len(offending)), threshold=0.0,
                   seconds=time.perf_counter() - start, details={**report.to_dict(), "summary": report.describe()})


def _statistic(report: ArchitectureReport) -> str | None:
    for name, items in (("extra key", report.extra), ("missing key", report.missing),
                        ("shape", report.reshaped), ("dtype", report.retyped), ("NaN/Inf", report.nonfinite)):
        if items:
            return name
    return None
