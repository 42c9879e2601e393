"""The adaptive attacker on a tiny profile: camouflages that pass the chain, leakage measured on what the client
sends, with and without the leakage guard, against the true batch."""
import json

import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.detection import build_detector
from fedleak.attacks.camouflage import CAMOUFLAGES
from fedleak.experiments.adaptive import AdaptiveConfig, run_adaptive
from fedleak.models import build_model


def test_trap_weights_camouflage_passes_the_chain_and_the_guard_stops_its_leak(tmp_path):
    config = AdaptiveConfig(camouflages=("none", "independent"), attacks=("trap_weights",), batch_size=64)
    rows = run_adaptive(config, tmp_path)
    row = rows["trap_weights"]
    assert json.loads((tmp_path / "adaptive.json").read_text())["trap_weights"]["model"] == "fcnn"
    assert json.loads((tmp_path / "config.json").read_text())["camouflages"] == ["none", "independent"]
    # The default chain no longer holds the row signatures (demoted for their false alarms on benign models), so
    # even the paper's form passes it: what stops the leak is the guard on the update.
    for camouflage in ("none", "independent"):
        accepted = row["camouflages"][camouflage]
        assert not accepted["unguarded"]["refused"] and accepted["unguarded"]["exact_recall"] > 0.05
        assert accepted["guarded"]["exact_recall"] == 0.0 and accepted["guarded"]["near_share"] == 0.0
    assert row["honest_exact_recall"] > 0.05  # the honest FC net gives samples away by itself
    assert row["holds"]["exact_recall"] and row["holds"]["near_share"]


def test_camouflages_change_only_what_the_manipulation_changed():
    torch.manual_seed(0)
    honest = build_model("fcnn", (1, 16, 16), 10, widths=(64, 32))
    sent, _ = ATTACKS.build("trap_weights").prepare(honest, AttackContext((1, 16, 16), 10))
    generator = torch.Generator().manual_seed(0)
    noisy = CAMOUFLAGES["noise=0.01"](sent, honest, generator)
    assert torch.equal(noisy.classifier.weight, honest.classifier.weight)
    assert not torch.equal(noisy.fc1.linear.weight, honest.fc1.linear.weight)
    sent, _ = ATTACKS.build("trap_weights").prepare(honest, AttackContext((1, 16, 16), 10))
    mixed = CAMOUFLAGES["mixed"](sent, honest, generator)
    kept = (mixed.fc1.linear.weight == honest.fc1.linear.weight).all(dim=1)
    assert int(kept.sum()) == 32
    sent, _ = ATTACKS.build("trap_weights").prepare(honest, AttackContext((1, 16, 16), 10))
    mirrored = build_detector("mirrored_rows")(sent, honest, [])
    shuffled = CAMOUFLAGES["independent"](sent, honest, generator)
    assert mirrored.flagged and not build_detector("mirrored_rows")(shuffled, honest, []).flagged


def test_bad_config_fails_in_one_line():
    with pytest.raises(ValueError, match="camouflage"):
        AdaptiveConfig(camouflages=("paint",))
    with pytest.raises(ValueError, match="manipulation"):
        AdaptiveConfig(attacks=("loki-ish",))


def test_cli_adaptive_refuses_ray(tmp_path, capsys):
    from fedleak.cli import main
    assert main(["detect-eval", "--quick", "--adaptive", "--ray", "local", "--out", str(tmp_path)]) == 2
    assert "leave out --ray" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
