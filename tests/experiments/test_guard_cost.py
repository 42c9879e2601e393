"""The leakage guard's cost on a small federation: FedAvg accuracy of a benign conv net with the guard on and off."""
import json

import pytest

from fedleak.experiments.guard_cost import GuardCostConfig, run_guard_cost


def test_guard_costs_a_benign_conv_net_little_accuracy(tmp_path):
    config = GuardCostConfig(models=("cnn",), protocols=("fedavg",), num_clients=2, rounds=1)
    row = run_guard_cost(config, tmp_path)["cnn"]["fedavg"]
    assert abs(row["accuracy_cost"]) <= 0.02  # the stated bound for a benign conv net
    assert row["accuracy_on"] > 0.15  # it learned: 10 classes
    assert row["guard_seconds"] > 0 and row["fit_seconds"] > 0
    assert json.loads((tmp_path / "guard_cost.json").read_text())["cnn"]["fedavg"]["accuracy_on"] == row["accuracy_on"]


def test_bad_model_fails_in_one_line():
    with pytest.raises(ValueError, match="unknown small model 'resnet50'"):
        GuardCostConfig(models=("resnet50",))
