import math

import pytest

from fedleak.detection import (DETECTORS, CalibratedDetector, DetectorChain, Verdict, WarmupZScore,
                               build_detector)
from fedleak.detection.options import RANGES
from fedleak.models import build_model
from fedleak.registry import component_options

from detection_data import SHAPE


@pytest.mark.parametrize("name, option, value", [
    ("dsnr", "threshold", math.nan),  # silently turned the detector off: score > nan is never true
    ("filter_ratio", "threshold", -1.0),  # flagged every model
    ("warmup_zscore", "threshold", math.inf),
    ("warmup_zscore", "steps", 2.5),
    ("warmup_zscore", "samples", 1),
    ("warmup_zscore", "lr", 0.0),
    ("warmup_zscore", "remember_rounds", -1),
    ("warmup_zscore", "relative_floor", math.nan),
    ("dsnr", "batch_size", True),
    ("dsnr", "seed", "0"),
])
def test_a_threshold_or_count_out_of_range_is_refused_naming_the_option(name, option, value):
    with pytest.raises(ValueError, match=rf"detector '{name}' option {option} must be .* got {value!r}"):
        build_detector(name, **{option: value})


def test_detector_classes_the_calibration_and_the_chain_check_their_options_too():
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0, got nan"):
        WarmupZScore(threshold=math.nan)
    with pytest.raises(ValueError, match="false_alarm_rate must be a finite number > 0 and < 1, got nan"):
        CalibratedDetector(WarmupZScore(), false_alarm_rate=math.nan)
    with pytest.raises(ValueError, match="min_samples must be an integer >= 1, got 0.5"):
        CalibratedDetector(WarmupZScore(), min_samples=0.5)
    with pytest.raises(ValueError, match="samples must be an integer >= 2, got 1"):
        DetectorChain([WarmupZScore()], build_model("fcnn", SHAPE, 10, widths=(8,)), samples=1)
    assert build_detector("dsnr", threshold=0).keywords == {"threshold": 0}  # the edge of the range is valid


def test_every_numeric_option_of_every_detector_has_a_range():
    components = {name: DETECTORS.options(name) for name in DETECTORS}
    components["CalibratedDetector"] = component_options(CalibratedDetector, skip=1)
    components["DetectorChain"] = component_options(DetectorChain, skip=2)
    numeric = {(name, option) for name, options in components.items() for option, default in options.items()
               if isinstance(default, (int, float)) and not isinstance(default, bool)}
    assert ("dsnr", "threshold") in numeric and ("warmup_zscore", "steps") in numeric
    assert {option for _, option in numeric} <= set(RANGES), sorted(numeric)


def test_reason_says_above_when_flagged_and_at_most_when_not():
    passed = Verdict(False, "dsnr", "fc1", "dsnr", 0.25, 1.0, 0.0)
    flagged = Verdict(True, "dsnr", "fc1", "dsnr", 3.0, 1.0, 0.0)
    assert passed.reason() == "dsnr of fc1: 0.25 <= threshold 1"
    assert flagged.reason() == "dsnr of fc1: 3 > threshold 1"
