"""``fedleak reproduce seer --quick``: loads the shipped checkpoints (no training), writes results.json with the four
SSIMs and the prior, and resumes from its cells."""
import json

import pytest

from fedleak.experiments.seer import SeerReproductionConfig, reproduce_seer


def test_quick_profile_loads_the_shipped_checkpoints_and_resumes(tmp_path):
    config = SeerReproductionConfig.quick(eval_batches=2)
    summary = reproduce_seer(config, tmp_path, progress=False)
    assert summary["checkpoints"] == ["shipped"] and "loaded, not retrained" in summary["text"]
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained
    written = json.loads((tmp_path / "results.json").read_text())
    for key in ("ssim_bn", "ssim_gn", "ssim_ln", "ssim_after_fedavg", "ssim_prior"):
        assert 0 < written[key] < 1
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert [c["key"] for c in cells] == ["bn-fedsgd", "gn-fedsgd", "ln-fedsgd", "bn-fedavg"]
    assert written["ssim_bn"] == pytest.approx(sum(cells[0]["ssim_per_batch"]) / 2, abs=1e-6)
    again = reproduce_seer(config, tmp_path, progress=False)  # every cell is finished: read back, not recomputed
    assert again["ssim_bn"] == summary["ssim_bn"]
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "decoded.png").stat().st_size > 0 and (tmp_path / "table.csv").is_file()
