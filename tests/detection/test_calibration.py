import pytest
import torch

from fedleak.detection import CalibratedDetector, Verdict, fit_threshold


def test_conformal_threshold_holds_the_false_alarm_rate_on_fresh_benign_scores():
    generator = torch.Generator().manual_seed(0)
    calibration = fit_threshold(torch.randn(999, generator=generator).tolist(), 0.05)
    assert calibration.threshold == pytest.approx(1.645, abs=0.12)  # the normal's 95% quantile
    fresh = torch.randn(20_000, generator=generator)
    rate = (fresh > calibration.threshold).float().mean().item()
    assert 0.035 < rate < 0.06 and calibration.guaranteed_rate <= 0.05


def test_too_few_rounds_fall_back_to_the_largest_score():
    calibration = fit_threshold([3.0, 1.0, 2.0], 0.01)
    assert calibration.threshold == 3.0 and calibration.guaranteed_rate == pytest.approx(0.25)
    with pytest.raises(ValueError, match="false_alarm_rate"):
        fit_threshold([1.0], 1.5)
    with pytest.raises(ValueError, match="without benign scores"):
        fit_threshold([], 0.1)


class _Scores:
    """A detector returning the next score of a list, with fixed threshold 10."""

    def __init__(self, scores):
        self.scores = list(scores)

    def __call__(self, received_model, local_model, batches, *, device="cpu"):
        score = self.scores.pop(0)
        return Verdict(score > 10.0, "stub", "layer", "stat", score, 10.0, 0.0)


def test_fixed_and_calibrated_modes():
    fixed = CalibratedDetector(_Scores([5.0, 12.0]), mode="fixed")
    assert [fixed(None, None, []).flagged for _ in range(2)] == [False, True]

    calibrated = CalibratedDetector(_Scores([5.0, 12.0, 2.5]), false_alarm_rate=0.1, min_samples=10)
    calibrated.fit([1.0 + 0.1 * i for i in range(19)])  # 1.0 .. 2.8: the 18th smallest, 2.7
    first = calibrated(None, None, [])
    assert first.flagged and first.threshold == pytest.approx(2.7)
    assert first.details["calibration"]["samples"] == 19
    assert calibrated(None, None, []).flagged
    assert not calibrated(None, None, []).flagged  # 2.5 is accepted ...
    assert calibrated.history[-1] == 2.5 and len(calibrated.history) == 20  # ... and remembered
    with pytest.raises(ValueError, match="unknown calibration mode"):
        CalibratedDetector(_Scores([]), mode="auto")


def test_calibrated_mode_uses_the_fixed_threshold_until_enough_rounds():
    detector = CalibratedDetector(_Scores([4.0, 4.0]), min_samples=5)
    verdict = detector(None, None, [])
    assert verdict.threshold == 10.0 and not verdict.flagged and detector.history == [4.0]
