"""Paper 001 Tables 1-3 runner on a tiny configuration: its rows, cells written as they finish, resume, the paper's
numbers beside ours in comparison.md."""
import json

import pytest

from fedleak.experiments.inversion_defenses import DefenseTableConfig, run_defense_table


def test_rows_of_each_table():
    assert [(k, a) for k, _, a in DefenseTableConfig("dp").rows()] == [
        ("none", ("ig",)), ("dp:sigma=0.0001", ("ig", "wiig", "dpia")), ("dp:sigma=0.001", ("ig", "wiig", "dpia"))]
    assert [k for k, _, _ in DefenseTableConfig("pruning").rows()] == ["none", "prune:p=0.9", "prune:p=0.95",
                                                                       "prune:p=0.99"]
    assert DefenseTableConfig("modules").rows()[1] == ("precode", "precode", ("pig", "wiig", "vbia"))
    with pytest.raises(ValueError, match="unknown defense table 'dropout'; valid: dp, pruning, modules"):
        DefenseTableConfig("dropout")


def test_tiny_pruning_table_writes_resumes_and_compares(tmp_path):
    config = DefenseTableConfig.quick("pruning", victims=2, attack_iterations=10, prune_rates=(0.99,))
    result = run_defense_table(config, tmp_path, progress=False)
    cells = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert {c["key"] for c in cells} == {"none/ig", "prune:p=0.99/ig", "prune:p=0.99/gpia"}
    assert all(c["label_accuracy"] == 1.0 and 0 <= c["near_recall_psnr30"] <= 1 for c in cells)
    comparison = (tmp_path / "comparison.md").read_text()
    assert "| prune:p=0.99 | GPIA |" in comparison and "| 0.50 (± 0.13) | " in comparison  # the paper's MNIST CNN SSIM
    assert (tmp_path / "reconstructions.png").stat().st_size > 0 and "paper ASR" in result["text"]
    run_defense_table(config, tmp_path, progress=False)  # resume: nothing is recomputed
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == len(cells)
