"""Paper 002 §9 / Fig. 4 on a small configuration: clipping alone keeps the exact extraction, small local DP noise
hides it from exact recall but not from the near-exact one, larger noise leaves nothing; the run resumes."""
import json

import pytest

from fedleak.experiments.trap_dp import TrapDPConfig, reproduce_trap_dp

KEY = "near_recall_psnr30"


def test_small_dp_reproduction(tmp_path):
    config = TrapDPConfig(dataset="bundled", model_options={"widths": (300, 8)}, batch_size=30, clips=(1.0, 0.01),
                          sigmas=(1e-2, 1e-6), runs=1, profile="test")
    result = reproduce_trap_dp(config, tmp_path, progress=False)
    rows = {(r["part"], r["clip"], r["sigma"]): r for r in result["rows"]}
    base = rows[("none", None, 0.0)]
    assert base["R"] >= 0.2  # trap weights extract a share of the batch exactly
    for clip in (1.0, 0.01):  # Fig. 4a: clipping alone changes nothing
        assert rows[("clipping", clip, 0.0)]["R"] == pytest.approx(base["R"])
    small, large = rows[("local_dp", 1.0, 1e-6)], rows[("local_dp", 1.0, 1e-2)]
    assert small["R"] == 0.0 and small[KEY] >= 0.2  # exact recall says safe, the images are still there
    assert large["R"] == 0.0 and large[KEY] == 0.0
    assert result["exact_vanishes_at_sigma"] == 1e-6 and result["near_vanishes_at_sigma"] == 1e-2
    assert "near-exact leakage (near_recall_psnr30" in result["text"]
    comparison = (tmp_path / "comparison.md").read_text()
    assert "sigma > 1 (Fig. 4b)" in comparison and "| 1e-06 |" in comparison
    for name in ("table.txt", "table.csv", "recall_vs_sigma.png", "extractions.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "config.json").read_text())["config"]["sigmas"] == [1e-6, 1e-2]
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 1 + 2 + 2
    reproduce_trap_dp(config, tmp_path, progress=False)  # a rerun finds every cell done
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells


def test_bad_sigmas_are_refused():
    with pytest.raises(ValueError, match="sigmas must be finite and > 0"):
        TrapDPConfig(sigmas=(0.0,))
