"""The one check of detector options: every threshold and numeric option finite and in its range.

A threshold of NaN would turn a detector off (``score > nan`` is always false) and a negative one would flag every
model, so both are refused here, as are non-integer or out-of-range counts (steps, samples, batch sizes). Every
detector's options pass through :func:`check_detector_options`: :func:`fedleak.detection.build_detector` for the
registered detectors, the constructors of the detector classes, the calibration and the detector chain.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Range:
    """A numeric option's kind (``int`` or ``float``) and its bounds; ``open_low``/``open_high`` exclude them."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a finite number"
        bounds = []
        if self.low > -math.inf:
            bounds.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high < math.inf:
            bounds.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return " ".join([what, " and ".join(bounds)]).strip()

    def contains(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.kind is int else numbers.Real):
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below


POSITIVE = Range(float, 0.0, open_low=True)
# Every numeric option a detector, the calibration or the chain takes; a test checks that none is missing.
RANGES: dict[str, Range] = {
    "threshold": Range(float, 0.0),
    "steps": Range(int, 1),
    "samples": Range(int, 2),
    "batch_size": Range(int, 2),
    "lr": POSITIVE,
    "relative_floor": POSITIVE,
    "round_floor": POSITIVE,
    "max_batchnorms": Range(int, 0),
    "remember_rounds": Range(int, 0),
    "seed": Range(int, 0),
    "false_alarm_rate": Range(float, 0.0, 1.0, open_low=True, open_high=True),
    "min_samples": Range(int, 1),
    "tolerance": POSITIVE,
    "contexts": Range(int, 2),
}


def check_detector_options(owner: str, options: Mapping[str, object]) -> None:
    """Raise ``ValueError`` naming ``owner``, the option, its range and the value given when an option in
    :data:`RANGES` is not a finite number in its range (options without a range are not numeric)."""
    for name, value in options.items():
        allowed = RANGES.get(name)
        if allowed is not None and not allowed.contains(value):
            raise ValueError(f"{owner} option {name} must be {allowed.describe()}, got {value!r}")
