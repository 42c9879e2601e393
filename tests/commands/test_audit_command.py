"""`fedleak audit` end to end on 2 CPU cores, kept tiny (issue 15): a registry model and a user's own model given
as an import path, scored against the clients' true data; the detectors on a malicious and on the honest model;
a rerun resumes from the finished cells."""
import json
import textwrap
import time

import pytest

from fedleak.cli import main

USER_MODEL = textwrap.dedent("""
    import torch.nn as nn


    def make(input_shape, num_classes, hidden=200):
        channels, height, width = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))
""")


def _report(out):
    assert (out / "report.html").is_file()
    report = json.loads((out / "report.json").read_text())
    for name in report["figures"]["grids"] + [report["figures"].get("privacy_vs_accuracy", "report.json")]:
        assert (out / name).is_file(), name
    return report


def _row(report, attack, defense):
    return next(r for r in report["leakage"] if r["attack"] == attack and r["defense"] == defense)


@pytest.fixture
def user_model(tmp_path, monkeypatch):
    (tmp_path / "audit_test_usermodel.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "audit_test_usermodel:make"


def test_quick_audit_of_the_registry_cnn(tmp_path):
    out = tmp_path / "cnn"
    assert main(["audit", "--model", "cnn", "--data", "bundled", "--quick", "--attacks", "passive,ig",
                 "--iterations", "100", "--victims", "2", "--defense", "prune:p=0.99", "--utility-rounds", "1",
                 "--utility-clients", "2", "--out", str(out)]) == 0
    report = _report(out)
    assert _row(report, "passive", "none")["status"] == "not applicable"  # the cnn starts with a convolution
    assert "fully connected layer that reads the raw input" in _row(report, "passive", "none")["reason"]
    plain, pruned = _row(report, "ig", "none"), _row(report, "ig", "prune:p=0.99")
    assert plain["status"] == pruned["status"] == "attacked"
    assert plain["ssim"] > 0.6 and plain["label_accuracy"] == 1.0  # measured 0.84 after 100 iterations
    assert {"psnr", "asr", "grid"} <= set(plain)
    costs = {d["defense"]: d for d in report["defenses"]}
    assert costs["none"]["accuracy_cost"] == 0.0 and costs["prune:p=0.99"]["accuracy_cost"] is not None
    assert report["command"].startswith("fedleak audit --model cnn --data bundled")


def test_audit_of_a_user_model_by_import_path_resumes(tmp_path, user_model):
    out = tmp_path / "user"
    argv = ["audit", "--model", user_model, "--data", "bundled", "--size", "28", "--quick", "--attacks", "passive",
            "--victims", "2", "--batch-size", "4", "--defense", "prune:p=0.9", "--defense", "cvb",
            "--utility-rounds", "1", "--utility-clients", "2", "--out", str(out)]
    assert main(argv) == 0
    report = _report(out)
    assert not report["model"]["registered"]
    plain = _row(report, "passive", "none")
    assert plain["recall"] >= 0.5 and plain["leaked"] >= 4  # exact extraction of the true batch (measured 8/8)
    assert _row(report, "passive", "prune:p=0.9")["recall"] < plain["recall"]
    cvb = _row(report, "passive", "cvb")
    assert cvb["status"] == "defense not applicable" and "CVB convolves a feature map" in cvb["reason"]
    costs = {d["defense"]: d for d in report["defenses"]}
    assert costs["none"]["accuracy"] > 0.2  # above chance (0.1) after one FedAvg round
    assert isinstance(costs["prune:p=0.9"]["accuracy_cost"], float)
    cells = (out / "cells.jsonl").read_text()
    start = time.perf_counter()
    assert main(argv) == 0  # resumes: nothing is computed again
    assert (out / "cells.jsonl").read_text() == cells
    assert _report(out)["leakage"] == report["leakage"]
    assert time.perf_counter() - start < 30


def test_malicious_audit_asks_the_detectors_about_each_manipulation(tmp_path, user_model):
    out = tmp_path / "malicious"
    assert main(["audit", "--model", user_model, "--data", "bundled", "--size", "28", "--threat", "malicious",
                 "--attacks", "trap_weights,robbing_the_fed,curious_kernels", "--victims", "1", "--batch-size", "8",
                 "--defense", "none", "--utility-rounds", "1", "--utility-clients", "2", "--out", str(out)]) == 0
    report = _report(out)
    assert _row(report, "trap_weights", "none")["recall"] >= 0.5  # measured 5/8 extracted exactly
    verdicts = {d["model"]: d for d in report["detection"]}
    assert verdicts["honest"]["flagged_by"] == []  # no false alarm on the honest model
    assert "architecture" in verdicts["robbing_the_fed"]["flagged_by"]  # the inserted imprint layer
    assert verdicts["curious_kernels"]["status"] == "not applicable"  # no convolution to manipulate
    assert "Would the client&#x27;s checks catch a malicious server?" in (out / "report.html").read_text()


def test_default_malicious_audit_of_the_registry_cnn(tmp_path):
    """The default malicious audit (every attack, the default defenses) on the registry cnn, kept small: it used to
    crash on model_inconsistency's missing target."""
    out = tmp_path / "malicious-cnn"
    assert main(["audit", "--model", "cnn", "--data", "bundled", "--threat", "malicious", "--quick", "--victims", "2",
                 "--iterations", "20", "--utility-rounds", "1", "--utility-clients", "2", "--utility-samples", "300",
                 "--out", str(out)]) == 0
    report = _report(out)
    verdict = report["verdict"]
    assert set(verdict) == {"leak", "defense", "manipulations", "warnings", "coverage"}
    assert verdict["leak"]["leaks"] is True and verdict["leak"]["samples"] >= 1  # an imprint reads them exactly
    assert _row(report, "robbing_the_fed", "none")["recall"] == 1.0
    assert _row(report, "decepticons", "none")["reason"] == "a text attack; this is an image model"
    assert "guarantees nothing" in " ".join(verdict["warnings"])  # DP at sigma 1e-3: epsilon in the millions
    assert _row(report, "loki", "none")["status"] == "attacked"  # its bins from the public data the audit holds
    checked = {d["model"]: d for d in report["detection"] if d["status"] == "checked"}
    assert checked["honest"]["flagged_by"] == [] and "architecture" in checked["robbing_the_fed"]["flagged_by"]
    assert not any(r["attack"] == "cdia" and r["defense"] in ("none", "dp:sigma=1e-3") for r in report["leakage"])


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["audit", "--model", "cnn", "--data", "bundled", "--attacks", "trap_weights", "--out", str(out)]) == 2
    assert "an honest server cannot run it (use --threat malicious)" in capsys.readouterr().err
    assert main(["audit", "--model", "cnn", "--data", "bundled", "--protocol", "fedavg:epochs=2",
                 "--out", str(out)]) == 2
    assert "unknown option(s) epochs" in capsys.readouterr().err
    for protocol in ("fedavg:steps=1:lr=nan", "fedavg:steps=1:lr=inf", "fedavg:steps=1:lr=-1", "fedavg:steps=0"):
        assert main(["audit", "--model", "cnn", "--data", "bundled", "--protocol", protocol, "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "--protocol fedavg" in error and len(error.strip().splitlines()) == 1, error
    for option in ("--victims", "--secure-aggregation"):
        assert main(["audit", "--model", "cnn", "--data", "bundled", option, "100000", "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert f"{option} 100000" in error and "training samples" in error, error
    with pytest.raises(SystemExit) as exit:  # argparse refuses it (every command's --seed: 0 .. 2**63 - 1)
        main(["audit", "--model", "cnn", "--data", "bundled", "--seed", str(2**64), "--out", str(out)])
    assert exit.value.code == 2 and "--seed" in capsys.readouterr().err
    assert not out.exists()
