"""The ``fedleak reproduce`` builder: a row names its module, run and results folder after the sub-command unless it
says otherwise, a bare option help is a positive integer, and every row's names resolve to real experiment code."""
import importlib

from fedleak.commands.common import positive_int
from fedleak.commands.reproduce import EXPERIMENTS
from fedleak.commands.studies import Study, count


def test_a_row_follows_the_naming_conventions_unless_it_says_otherwise():
    row = Study("bn-prior", "paper", "what", "~1 min", "help", config="BNPriorConfig",
                options={"runs": "runs (default 3)", "network": (str, "network")})
    assert (row.module, row.run, row.out) == ("bn_prior", "reproduce_bn_prior", "results/reproduce-bn-prior")
    assert row.options == {"runs": (positive_int, "runs (default 3)"), "network": (str, "network")}
    row = Study("text", "paper", "what", "~1 min", "help", module="trap_text", out="results/text")
    assert (row.module, row.run, row.out) == ("trap_text", "reproduce_trap_text", "results/text")
    assert count(10, "clients") == {"type": positive_int, "default": 10, "help": "clients (default 10)"}


def test_every_row_runs_a_real_experiment_function_with_its_config():
    for study in EXPERIMENTS:
        if study.same_as is not None:
            assert importlib.import_module(f"fedleak.commands.{study.same_as}").add_arguments
            continue
        experiment = importlib.import_module(f"fedleak.experiments.{study.module}")
        runs = [study.run] + [run for run, _, _, _ in study.variants.values()]
        texts = [text for text in [study.text] + [text for _, text, _, _ in study.variants.values()] if text]
        for name in [study.config, *runs, *texts]:
            assert callable(getattr(experiment, name, None)), f"{study.name}: {study.module}.{name} is missing"
