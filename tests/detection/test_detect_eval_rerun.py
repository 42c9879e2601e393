"""A detect-eval rerun after an interruption adds no duplicate cells (issue 13): :class:`ResultsDir` knows the
finished cells and never appends one twice."""
import json

from fedleak.experiments.detection import DetectEvalConfig, run_detect_eval


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
