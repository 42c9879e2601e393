"""Paper 002 Table 4 on a tiny configuration: passive extraction is scored at each chosen epoch of a training whose
loss falls; the paper's numbers stand beside ours; the run resumes."""
from fedleak.experiments.passive_training import PassiveTrainingConfig, reproduce_passive_training


def test_tiny_passive_training(tmp_path):
    config = PassiveTrainingConfig(dataset="bundled", model_options={"widths": (300, 16)}, epochs=(0, 1, 2),
                                   batch_size=50, runs=1)
    result = reproduce_passive_training(config, tmp_path, progress=False)
    first, second, third = result["rows"]
    assert first["loss"] is None and second["loss"] > third["loss"]  # the model trains
    assert 0 < first["R"] <= first["near_recall_psnr30"] <= 1  # passive extraction already recovers inputs
    assert "[0.526  0.998  0.005  0.050]" in result["text"]
    assert "| 0.998  0.005  0.050 |" in (tmp_path / "comparison.md").read_text()
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 3
    reproduce_passive_training(config, tmp_path, progress=False)
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells
