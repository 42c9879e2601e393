import json

import pytest

from fedleak.experiments.detection import DetectEvalConfig, run_detect_eval
from fedleak.study.detection_report import summarize_cells


def _cell(kind, client, scores, flagged, **extra):
    detectors = {name: {"score": s, "flagged": f, "threshold": 1.0, "seconds": 0.5}
                 for name, s, f in zip(("dsnr",), scores, flagged)}
    return {"kind": kind, "client": client, "detectors": detectors, "train_seconds": 2.0, **extra}


def test_rates_calibration_split_and_overhead_from_cells():
    config = DetectEvalConfig(false_alarm_rate=0.25)
    benign = [_cell("benign", c, [0.1 * (c + 1)], [c == 5]) for c in range(8)]  # one false alarm in 8
    attack = [_cell("malicious", c, [0.45], [False], attack="fishing", setting="x", round=2) for c in range(4)]
    summary = summarize_cells(benign + attack, config)
    dsnr = summary["benign"]["dsnr"]
    assert dsnr["client_rounds"] == 8 and dsnr["false_alarms"] == 1 and dsnr["rate"] == pytest.approx(1 / 8)
    # even clients 0, 2, 4, 6 score 0.1, 0.3, 0.5, 0.7: k = ceil(5 * 0.75) = 4th smallest = 0.7
    assert dsnr["calibrated_threshold"] == pytest.approx(0.7)
    assert dsnr["calibrated_rate"] == pytest.approx(1 / 4)  # odd clients 0.2, 0.4, 0.6, 0.8
    assert summary["attacks"]["fishing"]["dsnr"]["rate"] == 0.0
    assert summary["attacks"]["fishing"]["dsnr"]["calibrated_rate"] == 0.0  # 0.45 < 0.7 on clients 1, 3
    assert summary["time"]["share_of_epoch"]["dsnr"] == pytest.approx(0.25)


def test_tiny_evaluation_writes_cells_and_resumes(tmp_path):
    config = DetectEvalConfig(model="fcnn", size=(8, 8), model_options={"widths": (16,)}, partitions=("iid",),
                              num_clients=2, rounds=2, attack_rounds=(2,), attack_clients=1, samples=16,
                              dsnr_batch=8)
    summary = run_detect_eval(config, tmp_path)
    assert summary["benign"]["architecture"]["client_rounds"] == 4
    assert summary["attacks"]["robbing_the_fed"]["architecture"]["rate"] == pytest.approx(2 / 3)  # 2 inserts, 1 reuse
    assert "curious_kernels c=0.5" in summary["not_applicable"]  # an FC-NN has no convolution to rewrite
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert json.loads((tmp_path / "config.json").read_text())["config"]["model"] == "fcnn"
    assert (tmp_path / "table.md").read_text().count("| fcnn |") >= 5
    again = run_detect_eval(config, tmp_path)  # every cell is done: nothing is recomputed
    assert (tmp_path / "cells.jsonl").read_text().splitlines() == lines
    assert again["benign"] == summary["benign"]


def test_comparison_puts_our_rates_beside_the_papers_claims():
    from fedleak.study.detection_report import detection_comparison
    from fedleak.report.comparison import comparison_markdown

    def cell(kind, client, z, d, **extra):
        detectors = {"warmup_zscore": {"score": z, "flagged": z > 1, "threshold": 1.0, "seconds": 0.3},
                     "dsnr": {"score": d, "flagged": d > 1, "threshold": 1.0, "seconds": 0.1}}
        return {"kind": kind, "client": client, "detectors": detectors, "train_seconds": 2.0, **extra}

    benign = [cell("benign", c, 0.5, 0.2) for c in range(4)]
    attack = [cell("malicious", c, 5.0 if c else 0.5, 0.2, attack="fishing", setting="x", round=1) for c in range(4)]
    summary = summarize_cells(benign + attack, DetectEvalConfig(model="cnn"))
    figures = {"table1_max_z": {"benign": 2.0, "class fishing": 2000.0}, "fig3_max_benign_z": 30.0,
               "dsnr_before_max": 0.1, "dsnr_after_max": 0.2}
    text = comparison_markdown("paper 000", detection_comparison([summary], figures))
    assert "| cnn | fishing (4 checks) | 75% | 0% | every known attack flagged" in text
    assert "| cnn | benign: false alarms (4 client-rounds) | 0% | 0% |" in text
    assert "| 0.30 | 0.10 | 0.72-0.88" in text
    assert "| Table 1: max Z after one warm-up step, class fishing | 2e+03 | 1e+03x benign |" in text
    assert "| Fig. 3: max benign Z over training rounds | 30 | - | < 4000 |" in text


# a rerun after an interruption adds no duplicate cells (issue 13): ResultsDir knows the finished cells
def test_rerun_of_an_interrupted_partition_appends_no_duplicate_cells(tmp_path):
    config = DetectEvalConfig(model="fcnn", size=(8, 8), model_options={"widths": (16,)}, partitions=("iid",),
                              num_clients=2, rounds=2, attack_rounds=(2,), attack_clients=1, samples=16,
                              dsnr_batch=8)
    summary = run_detect_eval(config, tmp_path)
    cells = tmp_path / "cells.jsonl"
    lines = cells.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys)) and "iid/done" in keys
    cells.write_text("\n".join(line for line in lines if json.loads(line)["key"] != "iid/done") + "\n")  # killed
    again = run_detect_eval(config, tmp_path)
    rerun_keys = [json.loads(line)["key"] for line in cells.read_text().splitlines()]
    assert sorted(rerun_keys) == sorted(keys)  # the partition is finished again, and every cell is there once
    assert again["benign"] == summary["benign"]
