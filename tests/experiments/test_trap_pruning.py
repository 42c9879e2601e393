"""Paper 002 §9.3 on a small configuration: pruning the update stops exact extraction before it stops the
near-exact one, and heavy pruning leaves nothing; the run resumes."""
import json

from fedleak.experiments.trap_pruning import TrapPruningConfig, reproduce_trap_pruning

KEY = "near_recall_psnr30"


def test_small_pruning_reproduction(tmp_path):
    config = TrapPruningConfig(dataset="bundled", model_options={"widths": (300, 8)}, batch_size=30,
                               rates=(0.999, 0.99, 0.5), runs=1)
    result = reproduce_trap_pruning(config, tmp_path, progress=False)
    rows = {r["p"]: r for r in result["rows"]}
    assert rows[None]["R"] >= 0.2
    assert rows[0.999]["R"] == 0.0 and rows[0.999][KEY] == 0.0
    assert rows[0.5]["R"] == rows[None]["R"]  # most entries of the trapped layer's gradient are zero anyway
    assert rows[0.99]["R"] == 0.0 and rows[0.99][KEY] > 0.0  # leakage that only the near-exact share sees
    near, exact = result["near_vanishes_at_p"], result["exact_vanishes_at_p"]
    assert exact is not None and near is not None and exact <= near
    assert "recognisable at p = 0.8" in (tmp_path / "comparison.md").read_text()
    for name in ("table.txt", "table.csv", "recall_vs_p.png", "extractions.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "config.json").read_text())["config"]["rates"] == [0.5, 0.99, 0.999]
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 4
    reproduce_trap_pruning(config, tmp_path, progress=False)
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells
