"""Resume (issues 20, 22): every cell is keyed by the digest of the model source, the weights and the data, so a
rerun with changed weights is a new run; and every cell draws from its own seed, so an interrupted audit, resumed,
writes exactly the report of an uninterrupted one, CVB and DP cells included."""
import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from fedleak.audit import AuditConfig, run_audit

MODEL = textwrap.dedent("""
    import torch.nn as nn


    def make(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, num_classes))
""")


class Interrupted(Exception):
    pass


def _without_timing(value):
    """The report without wall-clock figures (seconds, and the sentence that quotes them)."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if not k.endswith("seconds") and k != "description"}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def test_changed_weights_are_a_new_run(tmp_path):
    (tmp_path / "fc.py").write_text(MODEL)
    weights = tmp_path / "weights.safetensors"
    config = AuditConfig.quick_profile(model=f"{tmp_path / 'fc.py'}:make", data="bundled", size=(28, 28),
                                       weights=str(weights), attacks=("passive",), victims=1, batch_size=2,
                                       defenses=(), utility_rounds=1, utility_clients=2)
    torch.manual_seed(0)
    first = {"1.weight": torch.randn(64, 784) * 0.05, "1.bias": torch.zeros(64),
             "3.weight": torch.randn(10, 64) * 0.1, "3.bias": torch.zeros(10)}
    save_file(first, str(weights))
    old = run_audit(config, tmp_path / "out", progress=False)
    save_file({k: v * 3 + 0.01 for k, v in first.items()}, str(weights))  # the same file name, other weights
    resumed = run_audit(config, tmp_path / "out", progress=False)
    fresh = run_audit(config, tmp_path / "fresh", progress=False)
    assert resumed["digest"] != old["digest"] and resumed["digest"] == fresh["digest"]
    assert _without_timing(resumed["defenses"]) == _without_timing(fresh["defenses"])
    assert resumed["defenses"][0]["accuracy"] != old["defenses"][0]["accuracy"]
    cells = [json.loads(line) for line in (tmp_path / "out" / "cells.jsonl").read_text().splitlines()]
    assert {c["digest"] for c in cells} == {old["digest"], resumed["digest"]}  # both kept; the report reads its own


def test_interrupted_audit_resumes_to_the_uninterrupted_report(tmp_path):
    config = AuditConfig.quick_profile(model="cnn", data="bundled", attacks=("ig", "cdia"), victims=1,
                                       iterations=5, defenses=("dp:sigma=1e-3", "cvb"), utility_rounds=1,
                                       utility_clients=2, utility_samples=300)
    whole = run_audit(config, tmp_path / "whole", progress=False)
    done = []

    def stop_after_two(cell):
        done.append(cell.label)
        if len(done) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_audit(config, tmp_path / "cut", progress=False, after_cell=stop_after_two)
    # 5 iterations leak no sample behind no defense, so DP noise on that update (batch size 1) is settled at the
    # floor without running (fedleak.audit.early_stop); the CVB cells run after the interruption
    assert done == ["leak/ig/none", "leak/cdia/cvb"]
    assert [r["status"] for r in whole["leakage"] if r["defense"] == "dp:sigma=1e-3"] == ["skipped"]
    resumed = run_audit(config, tmp_path / "cut", progress=False)
    assert _without_timing(resumed) == _without_timing(whole)
    cvb = [r for r in resumed["leakage"] if r["defense"] == "cvb"]
    assert {r["attack"] for r in cvb} == {"ig", "cdia"} and all(r["status"] == "attacked" for r in cvb)
