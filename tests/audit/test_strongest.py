"""The strongest attack behind each defense (issue 24): chosen by a rule from the defended model's anatomy and what
each attack needs, never from the model's name; the quick profile keeps that one inversion per defense."""
import textwrap

import pytest

from fedleak.audit import AuditConfig
from fedleak.audit.coverage import strongest
from fedleak.audit.plan import QUICK_SKIP, plan
from fedleak.audit.run import build_setup, defense_reasons
from fedleak.audit.strongest import mechanisms, ranked
from fedleak.defenses import apply_defenses
from fedleak.models import build_model

MODELS = textwrap.dedent("""
    import torch.nn as nn


    def dense(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, num_classes))


    def conv(input_shape, num_classes):
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 784, num_classes))
""")


@pytest.mark.parametrize("defense, found", [("none", set()), ("cvb", {"bottleneck"}), ("dropout", {"dropout"}),
                                            ("prune:p=0.9", {"pruning"}), ("dp:sigma=1e-3", {"dp"}),
                                            ("dropout,prune:p=0.9", {"dropout", "pruning"})])
def test_mechanisms_are_read_from_the_defended_model(defense, found):
    model = build_model("cnn", (1, 32, 32), 10)
    defended = apply_defenses(model, "" if defense == "none" else defense, model_name="cnn",
                              input_shape=(1, 32, 32))[0]
    assert mechanisms(defended, defense) == found


@pytest.mark.parametrize("present, first", [(set(), "ig"), ({"bottleneck"}, "vbia"), ({"dp"}, "dpia"),
                                            ({"pruning"}, "gpia"), ({"dropout"}, "dia"),
                                            ({"dropout", "pruning", "bottleneck"}, "cdia")])
def test_the_inversion_that_mimics_most_of_the_defense_ranks_first(present, first):
    presets = ["dlg", "idlg", "ig", "wiig", "dia", "dpia", "gpia", "vbia", "pig", "cdia"]
    order = [r.attack for r in ranked(presets, present)]
    assert order[0] == first
    assert "wiig" not in order  # the client's true randomness: a baseline, no attacker
    assert order.index("ig") < order.index("dlg")  # L-BFGS after the Adam presets


def test_exact_attacks_rank_before_inversion():
    order = [r.attack for r in ranked(["ig", "passive", "spear", "fedavg_inversion", "trap_weights"], set())]
    assert order == ["spear", "passive", "fedavg_inversion", "ig"]  # a manipulation is question 3's, unranked


@pytest.mark.parametrize("name, first", [("dense", "spear"), ("conv", "ig")])
def test_strongest_attack_follows_the_anatomy(tmp_path, name, first):
    (tmp_path / "models.py").write_text(MODELS)
    config = AuditConfig.quick_profile(model=f"{tmp_path / 'models.py'}:{name}", data="bundled", size=(28, 28),
                                       defenses=("dropout",))
    setup = build_setup(config)
    reasons, random, found = defense_reasons(setup)
    cells = plan(setup.config, setup.resolved.model, setup.info, setup.public, setup.digest, reasons, random, found)
    chosen = {s["defense"]: s["attack"] for s in strongest(cells)}
    assert chosen["none"] == first
    # behind dropout the strongest inversion mimics its masks; --quick runs that one inversion, no other
    inversions = [c for c in cells if c.kind == "leak" and c.defense == "dropout" and c.attack in
                  ("ig", "cdia", "dia", "vbia", "dpia", "dlg")]
    run = [c.attack for c in inversions if not c.reason]
    assert run == ["dia"] and all(c.status == QUICK_SKIP for c in inversions if c.reason)
