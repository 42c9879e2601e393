import copy

import pytest
import torch

from fedleak.attacks import prepare
from fedleak.detection import ArchitectureMismatch, architecture_check, compare_states
from fedleak.detection.architecture import require_matching_architecture
from fedleak.models import build_model

from detection_data import SHAPE


def test_benign_model_from_fedavg_passes(benign_cnn):
    local = build_model("cnn", SHAPE, 10, padding=2)
    verdict = architecture_check(benign_cnn, local)
    assert not verdict.flagged and verdict.score == 0 and verdict.layer is None


def test_inserted_imprint_layer_is_rejected_by_name(benign_cnn):
    manipulated, _ = prepare("robbing_the_fed", benign_cnn, num_bins=32)
    verdict = architecture_check(manipulated, build_model("cnn", SHAPE, 10, padding=2))
    assert verdict.flagged and verdict.statistic == "extra key"
    assert set(verdict.details["extra"]) == {"imprint.linear.weight", "imprint.linear.bias"}
    assert verdict.details["missing"] == [] and verdict.details["reshaped"] == {}
    assert verdict.layer == "imprint.linear.weight"


def test_reshaped_and_missing_and_retyped_tensors_are_named():
    local = build_model("cnn", SHAPE, 10, padding=2)
    wider = build_model("cnn", SHAPE, 12, padding=2)  # a classifier with two extra rows
    report = compare_states(wider, local)
    assert report.reshaped == {"classifier.weight": ((12, 256), (10, 256)), "classifier.bias": ((12,), (10,))}
    with pytest.raises(ArchitectureMismatch, match=r"classifier\.weight: \(12, 256\) instead of \(10, 256\)"):
        require_matching_architecture(wider, local)

    state = dict(local.state_dict())
    del state["block2.conv.bias"]
    state["block1.conv.weight"] = state["block1.conv.weight"].double()
    report = compare_states(state, local)
    assert report.missing == ["block2.conv.bias"]
    assert report.retyped == {"block1.conv.weight": ("torch.float64", "torch.float32")}


def test_nan_and_inf_parameters_are_rejected_by_name(benign_cnn):
    poisoned = copy.deepcopy(benign_cnn)
    with torch.no_grad():
        poisoned.block2.conv.weight[0, 0, 0, 0] = float("nan")
        poisoned.classifier.bias[3] = float("inf")
    verdict = architecture_check(poisoned, benign_cnn)
    assert verdict.flagged and verdict.statistic == "NaN/Inf"
    assert verdict.details["nonfinite"] == ["block2.conv.weight", "classifier.bias"]
    message = str(ArchitectureMismatch(compare_states(poisoned, benign_cnn)))
    assert "NaN/Inf in ['block2.conv.weight', 'classifier.bias']" in message
