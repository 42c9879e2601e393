"""Paper 002 §8.4 on a small configuration: the float32 delta of one small SGD step hides exact recall but not the
images; the run resumes."""
from fedleak.experiments.trap_fedavg import TrapFedAvgConfig, reproduce_trap_fedavg

KEY = "near_recall_psnr30"


def test_small_fedavg_reproduction(tmp_path):
    config = TrapFedAvgConfig(model_options={"widths": (500, 16)}, clients=2, batch_size=50, lrs=(0.01,),
                              local_steps=(1,), runs=1)
    result = reproduce_trap_fedavg(config, tmp_path, progress=False)
    gradient, delta = result["rows"]
    assert gradient["algorithm"] == "fedsgd" and gradient["R"] >= 0.2
    assert delta["R"] == 0.0 and delta[KEY] >= 0.2  # exact recall says safe, the near-exact share does not
    assert "0.32 ± 0.07" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "recall_vs_lr.png").stat().st_size > 0 and (tmp_path / "table.csv").exists()
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 2
    reproduce_trap_fedavg(config, tmp_path, progress=False)
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells
