"""Thresholds fitted from benign rounds for a chosen false-alarm rate, instead of a fixed constant.

The paper (Wang & Li §5.2) compares every score with one predefined threshold. A client that has seen benign
rounds can do better: given ``n`` benign scores, the ``k = ceil((n + 1)(1 - α))``-th smallest is a threshold that a
new benign score exceeds with probability at most α (the split-conformal quantile; it assumes the new round is
exchangeable with the recorded ones). With too few rounds for α (``k > n``) the largest score is used and the
guaranteed rate is ``1 / (n + 1)``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from fedleak.detection.options import check_detector_options
from fedleak.detection.verdict import Batch, Detector, Verdict

MODES = ("fixed", "calibrated")


@dataclass(frozen=True)
class Calibration:
    """A fitted threshold: from ``samples`` benign scores for the target ``false_alarm_rate``;
    ``guaranteed_rate`` is the bound the sample size supports (≤ the target when enough rounds were seen)."""

    threshold: float
    false_alarm_rate: float
    samples: int
    guaranteed_rate: float


def fit_threshold(benign_scores: Iterable[float], false_alarm_rate: float) -> Calibration:
    """The split-conformal threshold for ``false_alarm_rate`` from benign scores (module docstring)."""
    if not 0.0 < false_alarm_rate < 1.0:
        raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
    scores = sorted(float(s) for s in benign_scores)
    if not scores:
        raise ValueError("cannot calibrate a threshold without benign scores")
    n = len(scores)
    k = min(math.ceil((n + 1) * (1.0 - false_alarm_rate)), n)
    return Calibration(scores[k - 1], false_alarm_rate, n, (n + 1 - k) / (n + 1))


class CalibratedDetector:
    """A detector whose threshold is fitted from the benign scores it has seen (mode "calibrated") or kept at the
    detector's constant (mode "fixed").

    In calibrated mode the detector keeps a history of scores: ``fit`` sets it from known-benign rounds and, with
    ``learn_from_accepted``, each model it accepts adds its score. Until ``min_samples`` scores are recorded the
    detector's own threshold is used. Its memory (the scores, and the wrapped detector's if it has one) is
    :meth:`state_dict`.
    """

    def __init__(self, detector: Detector, *, mode: str = "calibrated", false_alarm_rate: float = 0.01,
                 min_samples: int = 20, learn_from_accepted: bool = True):
        if mode not in MODES:
            raise ValueError(f"unknown calibration mode {mode!r}; valid modes: {', '.join(MODES)}")
        check_detector_options("CalibratedDetector", {"false_alarm_rate": false_alarm_rate,
                                                      "min_samples": min_samples})
        self.detector, self.mode, self.false_alarm_rate = detector, mode, false_alarm_rate
        self.min_samples, self.learn_from_accepted = min_samples, learn_from_accepted
        self.history: list[float] = []

    def fit(self, benign_scores: Sequence[float]) -> Calibration:
        """Replace the history with ``benign_scores`` and return the fitted threshold."""
        self.history = [float(s) for s in benign_scores]
        return fit_threshold(self.history, self.false_alarm_rate)

    def observe(self, score: float) -> None:
        """Record the score of a round known (or trusted) to be benign."""
        self.history.append(float(score))

    def state_dict(self) -> dict:
        """The recorded benign scores (and the wrapped detector's state, if it keeps one), as plain numbers."""
        state: dict = {"history": list(self.history)}
        inner = getattr(self.detector, "state_dict", None)
        if inner is not None:
            state["detector"] = inner()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        history = state.get("history") if isinstance(state, dict) else None
        if not isinstance(history, list) or not all(isinstance(s, (int, float)) for s in history):
            raise ValueError("a CalibratedDetector state needs 'history', a list of benign scores")
        inner = getattr(self.detector, "load_state_dict", None)
        if (inner is not None) != ("detector" in state):
            raise ValueError("the CalibratedDetector state does not match its wrapped detector's memory")
        if inner is not None:
            inner(state["detector"])
        self.history = [float(s) for s in history]

    @property
    def calibration(self) -> Calibration | None:
        """The current fitted threshold, or None in fixed mode or before ``min_samples`` scores."""
        if self.mode == "fixed" or len(self.history) < self.min_samples:
            return None
        return fit_threshold(self.history, self.false_alarm_rate)

    def __call__(self, received_model: nn.Module, local_model: nn.Module, batches: Sequence[Batch], *,
                 device: str | torch.device = "cpu") -> Verdict:
        verdict = self.detector(received_model, local_model, batches, device=device)
        calibration = self.calibration
        if calibration is None:
            verdict.details["calibration"] = {"mode": self.mode, "samples": len(self.history)}
        else:
            verdict = dataclasses.replace(verdict, threshold=calibration.threshold,
                                          flagged=verdict.score > calibration.threshold)
            verdict.details["calibration"] = {"mode": self.mode, **dataclasses.asdict(calibration)}
        if self.mode == "calibrated" and self.learn_from_accepted and not verdict.flagged:
            self.observe(verdict.score)
        return verdict
