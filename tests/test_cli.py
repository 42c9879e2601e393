"""The CLI refuses bad options with one line naming the option, before any work or writing (issue 13); its
defaults run."""
import json

import pytest
import torch

from fedleak.cli import main
from fedleak.report import ResultsDir


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["train", "--device", "tpu"], "argument --device: unknown device 'tpu'"),
    (["train", "--device", f"cuda:{torch.cuda.device_count()}"], "argument --device: 'cuda:"),
    (["ablation", "--dataset", "bundled", "--model", "cnn", "--victims", "0"],
     "argument --victims: must be a positive integer, got '0'"),
    (["ablation", "--dataset", "bundled", "--model", "cnn", "--seeds", "abc"],
     "argument --seeds: expected an integer, got 'abc'"),
    (["detect-eval", "--false-alarm-rate", "2"], "argument --false-alarm-rate: must be a number in (0, 1), got '2'"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number > 0, got 'nan'"),
    (["train", "--size", "0"], "argument --size: size must be one or two positive integers"),
])
def test_bad_options_are_one_line_naming_the_option(argv, message, capsys, tmp_path):
    out = tmp_path / "out"
    line = _refused([*argv, "--out", str(out)], capsys)
    assert message in line
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys):
    assert "argument --device: 'cuda': CUDA is not available on this machine" in _refused(
        ["train", "--device", "cuda"], capsys)


def test_out_that_is_a_file_or_unwritable(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    assert f"argument --out: '{tmp_path / 'file'}' is a file, not a folder" in _refused(
        ["train", "--out", str(tmp_path / "file")], capsys)
    assert "argument --out: '/sys/fedleak/out': /sys is not writable" in _refused(
        ["train", "--out", "/sys/fedleak/out"], capsys)


def test_train_defaults_run_and_invalid_inputs_write_nothing(capsys, tmp_path):
    out = tmp_path / "train"
    assert main(["train", "--rounds", "1", "--clients", "2", "--out", str(out)]) == 0  # otherwise the defaults
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["federation"]["size"] == [32, 32] and record["config"]["federation"]["model"] == "cnn"
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 1
    bad = tmp_path / "bad"
    assert main(["train", "--size", "28", "--out", str(bad)]) == 2  # the cnn needs 29 px
    assert "use larger images or padding=2" in capsys.readouterr().err and not bad.exists()


def test_train_refuses_a_finished_ablation_folder_and_leaves_it_as_it_was(capsys, tmp_path):
    with ResultsDir(tmp_path, {"dataset": "bundled", "model": "cnn", "seeds": [0]}) as ablation:
        ablation.add("utility:none:seed0", {"accuracy": 0.8})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["train", "--rounds", "1", "--clients", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} holds the results of another run configuration" in err
    assert "federation: folder's (absent)" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_list_prints_every_attack_of_the_one_registry_with_its_options(capsys):
    from fedleak.attacks import ATTACKS
    from fedleak.cli import main

    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    for name in ATTACKS.names():
        assert f"  {name} " in out
    for name in ("ig", "cdia", "passive", "trap_weights", "robbing_the_fed", "decepticons"):
        assert f"  {name} " in out
    assert "scale_factor=0.95" in out and "iterations=None" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{kind} (" in out for kind in ("attacks", "defenses", "detectors", "models", "datasets"))


def test_list_defenses_prints_plain_text_and_the_audit_defaults(capsys):
    assert main(["list", "defenses"]) == 0
    out = capsys.readouterr().out
    assert ":class:" not in out and ":func:" not in out and "``" not in out
    assert "sigma=1e-4" in out  # the library's default, written as users write it
    assert "fedleak audit applies by default: dp:sigma=1e-3 and cvb" in out


def test_data_info_states_what_the_audit_feeds_the_model(capsys):
    assert main(["data", "info", "bundled"]) == 0
    out = capsys.readouterr().out
    assert "shape (1, 28, 28)" in out and "reads (1, 32, 32) float32 in [0, 1], channels first" in out
