"""The issue-24 reproductions run end to end through the case layer and write results.json and comparison.md
(tiny budgets: the attacks' quality is asserted in tests/attacks/inversion)."""
import json

import torch

from fedleak.experiments.bn_prior import BNPriorConfig, reproduce_bn_prior
from fedleak.experiments.fedavg_inversion import FedAvgInversionConfig, reproduce_fedavg_inversion


def test_bn_prior_reports_the_prior_each_case_used(tmp_path):
    torch.set_num_threads(1)
    config = BNPriorConfig(network="cnn", size=16, iterations=2, warmup_batches=2, rows=(("fedavg", "auto"), ("fedsgd", "auto"),
                                                                          ("fedsgd", "none"), ("fedsgd", "proxy")))
    result = reproduce_bn_prior(config, tmp_path)
    assert [r["used"] for r in result["rows"]] == ["inferred", "running", "none", "proxy"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == 4 and all(0 <= r["ssim"] <= 1 for r in saved["rows"])
    assert "Yin et al." in (tmp_path / "comparison.md").read_text()


def test_fedavg_inversion_and_ig_are_scored_on_the_same_updates(tmp_path):
    torch.set_num_threads(1)
    config = FedAvgInversionConfig(clients=1, samples=2, batch_size=1, epochs=2, iterations=2, orders=2)
    result = reproduce_fedavg_inversion(config, tmp_path)
    assert [r["attack"] for r in result["rows"]] == ["fedavg_inversion", "fedavg_inversion_matched", "fedavg_inversion_true_labels", "ig"]
    assert all(r["images"] == 2 for r in result["rows"])  # two epochs over the same two images
    assert set(result["recovered_share"]) == {"fedavg_inversion", "fedavg_inversion_matched", "fedavg_inversion_true_labels",
                                              "ig"}
    assert "> 0.45" in (tmp_path / "comparison.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["config"]["epochs"] == 2
