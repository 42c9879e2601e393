"""The trap-weights reproduction (paper 002 Tables 5-6) on a small configuration, and its demo step."""
import json

from fedleak.experiments.demo import trap_weights_step as demo_step
from fedleak.experiments.trap_weights import INITIALISERS, SCALE_FACTORS, TrapReproductionConfig, reproduce_trap_weights


def test_small_reproduction_writes_tables_resumes_and_beats_the_passive_attack(tmp_path):
    config = TrapReproductionConfig(dataset="bundled", runs=1, batch_size=50, neurons=300, fcnn_widths=(16,),
                                    cnn_channels=(4, 4), tables=("2", "5"))
    result = reproduce_trap_weights(config, tmp_path, progress=False)
    summary = result["summary"]
    passive = summary["table2/xavier_uniform"]["fcnn"]["R"]
    trapped = max(summary[f"table5/{s}"]["fcnn"]["R"] for s in (0.7, 0.8, 0.9))
    assert trapped > 2 * passive
    assert summary["table5/0.4"]["fcnn"]["A"] < summary["table5/0.999"]["fcnn"]["A"]  # larger s, more neurons fire
    assert "Table 5" in result["text"] and "[0.796  0.203  0.540]" in result["text"]  # paper numbers beside ours
    comparison = (tmp_path / "comparison.md").read_text()
    assert "## Table 5" in comparison and "| 0.700 | " in comparison and "| 0.796  0.203  0.540 |" in comparison
    assert (tmp_path / "figure_fcnn.png").stat().st_size > 0 and (tmp_path / "figure_cnn.png").exists()
    cells = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 2 * (len(INITIALISERS) + len(SCALE_FACTORS)) == 2 * (8 + 13)  # 7 of the paper + default
    assert json.loads((tmp_path / "config.json").read_text())["config"]["runs"] == 1
    reproduce_trap_weights(config, tmp_path, progress=False)  # a rerun finds every cell done
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == cells


def test_demo_step_extracts_the_clients_batch_through_the_fl_hooks(tmp_path):
    figures = demo_step(tmp_path, device="cpu", seed=0)
    assert figures["batch size"] == 100
    assert figures["extracted exactly (recall R)"] >= 0.25
    assert figures["extracted exactly (recall R)"] > 2 * figures["passive attack recall on the same batch"]
    assert figures["declared by the attacker (no ground truth)"] == round(figures["extracted exactly (recall R)"] * 100)
    assert (tmp_path / "extracted.png").stat().st_size > 0
