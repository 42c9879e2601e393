import math

import pytest
import torch

from fedleak.attacks import prepare
from fedleak.detection import filter_ratio_check
from fedleak.detection.filter_ratio import filter_ratios
from fedleak.models import build_model

from detection_data import SHAPE


def test_ratio_is_largest_entry_over_the_sum_of_the_others():
    weight = torch.tensor([[[[1.0, -2.0], [0.5, 0.5]]], [[[0.0, 0.0], [3.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    ratios = filter_ratios(weight)
    assert ratios[0].item() == pytest.approx(2.0 / 2.0)
    assert math.isinf(ratios[1].item()) and ratios[2].item() == 0.0


@pytest.mark.parametrize("attack", ["curious_kernels", "input_forwarding"])
def test_identity_kernels_are_flagged_at_the_first_conv(attack, batch16):
    model = build_model("vgg_cnn", SHAPE, 10, channels=(4, 8), hidden=32)
    manipulated, _ = prepare(attack, model)
    verdict = filter_ratio_check(manipulated, model, [batch16])
    assert verdict.flagged and math.isinf(verdict.score) and verdict.layer == "block1.conv"
    assert not filter_ratio_check(model, model, [batch16]).flagged


def test_benign_model_from_fedavg_passes(benign_cnn, batch16):
    verdict = filter_ratio_check(benign_cnn, benign_cnn, [batch16])
    assert not verdict.flagged and 0.0 < verdict.score < 0.5 and verdict.layer == "block1.conv"


def test_model_without_convolution_is_not_flagged(batch16):
    verdict = filter_ratio_check(build_model("fcnn", SHAPE, 10, widths=(32,)), None, [batch16])
    assert not verdict.flagged and verdict.layer is None and "no convolution" in verdict.details["note"]
