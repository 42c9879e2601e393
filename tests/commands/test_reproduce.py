"""``fedleak reproduce``: the list of experiments, the model options parser and its one-line refusals."""
import argparse

import pytest

from fedleak.cli import main
from fedleak.commands.common import ModelChoice, parse_model
from fedleak.commands.reproduce import EXPERIMENTS
from fedleak.models import build_model


def test_list_names_every_experiment_with_paper_and_quick_time(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for experiment in EXPERIMENTS:
        line = next(line for line in out.splitlines() if line.startswith(experiment.name + " "))
        assert experiment.paper in line and experiment.quick_time in line
    assert {"trap-weights", "dp"} <= {e.name for e in EXPERIMENTS}


def test_reproduce_without_an_experiment_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["reproduce"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("choose an EXPERIMENT, or --list to see them")


def test_model_options_are_parsed_and_build_the_model():
    choice = parse_model("resnet18:norm=group")
    assert choice == ModelChoice("resnet18", {"norm": "group"}) and str(choice) == "resnet18:norm=group"
    model = build_model(choice.name, (3, 32, 32), 10, **choice.options)
    assert not any("BatchNorm" in type(m).__name__ for m in model.modules())
    assert any("GroupNorm" in type(m).__name__ for m in model.modules())
    assert parse_model("fcnn:widths=1000+64").options == {"widths": (1000, 64)}


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown model 'nope'; valid models:"),
    ("resnet18:depth=3", "model 'resnet18' has no option depth; its options: norm, width"),
    ("resnet18:norm", "option 'norm' is not key=value"),
    ("fcnn:widths=1+2:widths=3", "option 'widths' is given twice"),
])
def test_bad_model_options_name_the_problem(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_model(text)


def test_the_cli_refuses_a_bad_model_before_writing(capsys, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["reproduce", "dp", "--model", "fcnn:depth=2", "--out", str(out)])
    assert "argument --model: model 'fcnn' has no option depth" in capsys.readouterr().err
    assert not out.exists()


def test_ablation_takes_model_options_under_both_names():
    from fedleak.cli import build_parser
    from fedleak.commands.ablation import config_from_args

    for argv in (["ablation"], ["reproduce", "ablation"]):
        args = build_parser().parse_args([*argv, "--dataset", "bundled", "--model", "resnet18:norm=group", "--quick"])
        config = config_from_args(args)
        assert (config.model, config.model_options, config.profile) == ("resnet18", {"norm": "group"}, "quick")


def test_detection_is_detect_eval():
    from fedleak.cli import build_parser
    from fedleak.commands import detect_eval

    args = build_parser().parse_args(["reproduce", "detection", "--quick", "--false-alarm-rate", "0.1"])
    assert args.func is detect_eval.run and args.quick and args.false_alarm_rate == 0.1
