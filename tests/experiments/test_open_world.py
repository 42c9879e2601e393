"""The open-world evaluation on a handful of benign-zoo variants: it writes open_world.json with every variant's
verdict (the all-convolutional classifier included), and a detector's false alarms are counted from the
verdicts."""
from __future__ import annotations

import json

import pytest
import torch

from fedleak.benchmarks.benign_zoo import ZOO, zoo_variants
from fedleak.detection import DEMOTED, FIRST_CONTACT, build_detector
from fedleak.cli import main
from fedleak.experiments.open_world import OpenWorldConfig, run_open_world

SUBSET = ("mlp", "allconv-28", "mlp-pruned90", "vit-zero-proj")


def test_the_zoo_is_large_deterministic_and_covers_its_families():
    assert len(ZOO) >= 50 and len({v.name for v in ZOO}) == len(ZOO)
    families = {v.family for v in ZOO}
    assert {"resnet", "mobilenet", "all-conv", "vit", "lora", "lm", "bn-cnn", "mlp"} <= families
    sizes = {v.shape[1] for v in ZOO if v.inputs == "image"}
    assert min(sizes) == 28 and max(sizes) == 224
    variant = zoo_variants(("mlp-pruned90",))[0]
    a, b = variant.build(3), variant.build(3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert float((a[1].weight == 0).float().mean()) > 0.5  # magnitude pruning zeroed most of the first layer
    with pytest.raises(ValueError, match="unknown benign zoo variant"):
        zoo_variants(("no-such-model",))


def test_an_all_convolutional_classifier_gets_a_batch_dominance_verdict():
    model = zoo_variants(("allconv-28",))[0].build(0)
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    verdict = build_detector("batch_dominance")(model, model, [(x, torch.zeros(16, dtype=torch.long))])
    assert verdict.layer and verdict.score == pytest.approx(0.0, abs=1e-6)  # no batch norm: no swing


def test_open_world_writes_every_verdict_and_counts_false_alarms(tmp_path):
    assert main(["detect-eval", "--quick", "--open-world", "--model", ",".join(SUBSET), "--out", str(tmp_path)]) == 0
    summary = written = json.loads((tmp_path / "open_world.json").read_text())
    assert written["config"]["clients"] == 3 and written["config"]["variants"] == list(SUBSET)
    for key in ("benign_variants", "false_alarm_rate", "flagged", "false_alarms_per_detector", "config",
                "default_chain", "over_bound", "flagged_variants"):
        assert key in written
    assert written["benign_variants"] == len(SUBSET) and written["checks"] == 3 * len(SUBSET)
    assert set(written["false_alarms_per_detector"]) == set(FIRST_CONTACT + DEMOTED)
    cells = [json.loads(line) for line in (tmp_path / "open_world_cells.jsonl").read_text().splitlines()]
    assert {c["variant"] for c in cells} == set(SUBSET)
    assert all(set(c["verdicts"]) == set(FIRST_CONTACT + DEMOTED) for c in cells)  # every detector, every model
    # the 90%-pruned MLP has rows more than half zero: degenerate_rows flags it on every client
    pruned = [f for f in summary["flagged"] if f["variant"] == "mlp-pruned90" and f["detector"] == "degenerate_rows"]
    assert len(pruned) == 3 and all(f["score"] > f["threshold"] for f in pruned)
    rate = sum(c["variant"] == "mlp-pruned90" or c["variant"] == "vit-zero-proj" for c in cells) / len(cells)
    assert summary["false_alarms_per_detector"]["degenerate_rows"] == pytest.approx(rate)
    chain_hits = sum(any(v["flagged"] for d, v in c["verdicts"].items() if d in FIRST_CONTACT) for c in cells)
    assert summary["false_alarm_rate"] == pytest.approx(chain_hits / len(cells))
    again = run_open_world(OpenWorldConfig(variants=SUBSET), tmp_path)  # every cell is done: a rerun resumes
    assert again["flagged"] == summary["flagged"] and len(cells) == 3 * len(SUBSET)
    with pytest.raises(ValueError, match="^clients must be an integer >= 1, got 0$"):
        OpenWorldConfig(clients=0)
