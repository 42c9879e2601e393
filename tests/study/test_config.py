"""Experiment configs built from Python check their device as ``--device`` does on the command line."""
import pytest
import torch

from fedleak.experiments.detection import DetectEvalConfig
from fedleak.experiments.loki import LokiReproductionConfig


@pytest.mark.parametrize("config", [DetectEvalConfig, LokiReproductionConfig])
def test_an_unknown_or_absent_device_is_refused_when_the_config_is_built(config):
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        config(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            config(device="cuda")
    assert config(device="cpu").device == "cpu"


def test_detect_eval_config_checks_its_manipulated_rounds():
    with pytest.raises(ValueError, match=r"attack rounds \(2, 25\) must lie in 1..20"):
        DetectEvalConfig(attack_rounds=(2, 25))
    with pytest.raises(ValueError, match="attack_clients must be in 1..10"):
        DetectEvalConfig(attack_clients=11)


def test_the_shared_bases_give_each_config_its_data_profile_and_guard_fields():
    from fedleak.detection.leakage_guard import LeakageGuard
    from fedleak.experiments.adaptive import AdaptiveConfig
    from fedleak.experiments.guard_cost import GuardCostConfig
    from fedleak.experiments.qbi import QbiReproductionConfig

    assert (QbiReproductionConfig().dataset, QbiReproductionConfig().profile) == ("bundled", "full")
    assert QbiReproductionConfig.quick().profile == "quick"
    assert AdaptiveConfig().tolerance == GuardCostConfig().tolerance == LeakageGuard().tolerance
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        GuardCostConfig(device="tpu")
    with pytest.raises(ValueError, match="^rounds must be an integer >= 1, got 0$"):
        GuardCostConfig(rounds=0)
    with pytest.raises(ValueError, match="^samples must be an integer >= 1, got True$"):
        AdaptiveConfig(samples=True)
    with pytest.raises(ValueError, match="^unknown small model 'resnet50'; valid: cnn, "):
        GuardCostConfig(models=("cnn", "resnet50"))
