"""What every detector returns, and the local data it is given.

A detector is a function of what a client has (Wang & Li §3, §5): the model it received, its own copy of the
architecture, and a few local batches. It answers with a :class:`Verdict`: flagged or not, the layer and statistic
behind the score, the threshold it was compared with and the seconds the check took.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import torch
import torch.nn as nn

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Verdict:
    """A detector's answer about one received model; ``flagged`` iff ``score > threshold``."""

    flagged: bool
    detector: str
    layer: str | None
    statistic: str | None
    score: float
    threshold: float
    seconds: float
    details: dict = field(default_factory=dict)

    def reason(self) -> str:
        """One line naming the layer, statistic and score against the threshold (``>`` when flagged, ``<=`` when
        not): the text of a refusal; ``details["summary"]`` if set."""
        if "summary" in self.details:
            return self.details["summary"]
        what = " of ".join(part for part in (self.statistic, self.layer) if part)
        relation = ">" if self.flagged else "<="
        return f"{what or 'score'}: {self.score:.4g} {relation} threshold {self.threshold:.4g}"

    def to_dict(self) -> dict:
        return {
            "flagged": self.flagged, "detector": self.detector, "layer": self.layer, "statistic": self.statistic,
            "score": self.score, "threshold": self.threshold, "seconds": self.seconds, "details": self.details,
        }


class Detector(Protocol):
    """``detector(received_model, local_model, batches, *, device) -> Verdict``."""

    def __call__(self, received_model: nn.Module, local_model: nn.Module, batches: Sequence[Batch], *,
                 device: str | torch.device = "cpu") -> Verdict: ...


def gather_samples(batches: Iterable[Batch], count: int, *, generator: torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> Batch:
    """``count`` random samples (without replacement) drawn from the concatenation of ``batches``.

    Takes every sample when the batches hold fewer than ``count``. Raises ``ValueError`` on empty or malformed
    batches, naming what was wrong.
    """
    xs, ys = [], []
    for index, batch in enumerate(batches):
        x, y = check_batch(batch, what=f"batch {index}")
        xs.append(x)
        ys.append(y)
    if not xs or sum(len(x) for x in xs) == 0:
        raise ValueError("the detector needs at least one local sample; got no batches")
    x, y = torch.cat(xs), torch.cat(ys)
    if count < len(x):
        pick = torch.randperm(len(x), generator=generator)[:count]
        x, y = x[pick], y[pick]
    return x.to(device), y.to(device)


def check_batch(batch: Batch, *, what: str = "the local batch") -> Batch:
    """``batch`` itself after checking that it is an (inputs, labels) pair of equal-length tensors without NaN or
    Inf: a non-finite local sample would make every score NaN and the check pass silently."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{what} must be an (inputs, labels) pair, got {type(batch).__name__}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y):
        raise ValueError(f"{what} must hold two tensors of equal length")
    for name, tensor in (("inputs", x), ("labels", y)):
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            bad = (~torch.isfinite(tensor)).flatten(1).any(dim=1) if tensor.dim() > 1 else ~torch.isfinite(tensor)
            rows = bad.nonzero().flatten()[:5].tolist()
            raise ValueError(f"{what} holds NaN or Inf in its {name} (samples {rows}); the detectors need finite "
                             f"local data")
    return x, y


def working_copy(model: nn.Module, device: str | torch.device) -> nn.Module:
    """A copy of ``model`` on ``device``, so that a check never moves or changes the model the client holds."""
    return copy.deepcopy(model).to(device)
