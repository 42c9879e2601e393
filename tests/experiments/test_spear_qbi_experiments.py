"""`fedleak reproduce spear` and `qbi` on small configurations: measured against the clients' true batches by the
audit, results.json and comparison.md written, and a rerun resumes."""
import json

from fedleak.experiments.qbi import QbiReproductionConfig, reproduce_qbi
from fedleak.experiments.spear import SpearReproductionConfig, reproduce_spear


def test_small_spear_reproduction(tmp_path):
    config = SpearReproductionConfig(batch_sizes=(1, 4), batches=2, proposals=50_000, fedavg_steps=0)
    result = reproduce_spear(config, tmp_path, progress=False)
    assert [r["batch"] for r in result["rows"]] == [1, 4]
    assert all(r["exact_rate"] == 1.0 and r["recall"] == 1.0 and r["false_claims"] == 0 for r in result["rows"])
    assert result["goal_b16_met"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][1]["batches"] == 2 and "b ~ 25" in (tmp_path / "comparison.md").read_text()
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    reproduce_spear(config, tmp_path, progress=False)
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells


def test_small_qbi_reproduction(tmp_path):
    config = QbiReproductionConfig(neurons=(200,), batch_sizes=(20,), runs=1, clients=2)
    result = reproduce_qbi(config, tmp_path, progress=False)
    (row,) = result["rows"]
    assert row["qbi_recall"] >= 0.6 and row["gain_over_trap"] > 0.2  # quick profile: 0.86 vs 0.23
    assert row["pairs_recall"] >= 0.6 and row["pairs_over_trap"] > 0.2  # quick profile: PAIRS 0.93
    text = (tmp_path / "comparison.md").read_text()
    assert "+50%" in text and "PAIRS (ours)" in text
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["neurons"] == 200
