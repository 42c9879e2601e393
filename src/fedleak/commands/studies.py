"""One builder for every ``fedleak reproduce`` sub-command: a sub-command is a :class:`Study` row (data), and
:func:`add` turns a row into its parser and its run.

A run builds the experiment's config ``fedleak.experiments.<module>.<config>`` (its profile classmethod, e.g.
``quick()``, when the profile's flag is given) from the common arguments (``--dataset``/``--root``, ``--model``,
``--seed``, ``--device``), the profile options given on the command line and the row's own arguments, runs
``<run>(config, out)`` (with ``ray=`` where the row takes ``--ray``) and prints the result's text and the files it
wrote. The experiment module is imported on use, so that ``fedleak --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

from fedleak.commands.common import (add_data_arguments, add_profile_options, add_run_arguments, parse_model,
                                     positive_int, profile_overrides)

BUNDLED_IMAGES = ("bundled", "image dataset (default bundled)")  # the --dataset of the rows run on any image set


@dataclass(frozen=True)
class Study:
    """One ``fedleak reproduce`` sub-command.

    ``name``; its row of ``--list``: ``paper`` (file number in shared/papers and authors, or the paper), what it
    ``reproduces``, the measured time of its quick profile (``quick_time``); ``help``. What it runs: ``module``,
    ``config`` (class) and ``run`` (function) of ``fedleak.experiments`` (by default the module named like the
    sub-command, ``trap-weights`` -> ``trap_weights``, and its ``reproduce_<module>``); ``files`` it writes;
    ``text``: the module's function turning the result into the printed text (default: the result's ``"text"``).
    Its arguments: ``data`` (default dataset, help; None: no ``--dataset``), ``quick`` (help of ``--quick``),
    ``out`` (default results folder, by default ``results/reproduce-<name>``), ``ray`` (``--ray``), ``model``
    (default, help of ``--model``; None: no ``--model``), ``options`` (profile options, ``name=(type, help)``, or
    ``name=help`` for the most common kind, a positive integer: default None leaves the profile's value),
    ``arguments`` (its own, ``name -> add_argument keywords``; each goes to the config under its name unless
    ``fields`` says otherwise); ``fields(args)``: the config fields read from the arguments, when they are not the
    config's own names; ``profiles``: extra profile flags (``--paper``) and the classmethod each selects;
    ``default_profile``: the classmethod used when no profile flag is given (None: the class itself);
    ``variants``: a flag that runs another function of the module (``flag -> (run, text, files, help)``);
    ``constants``: config fields this sub-command fixes (one experiment behind several sub-commands);
    ``quick_method``: the classmethod ``--quick`` selects (None: ``fields`` reads ``--quick`` itself).
    ``same_as``: a ``fedleak`` command module whose ``add_arguments`` builds this sub-command (the command and the
    sub-command are one)."""

    name: str
    paper: str
    reproduces: str
    quick_time: str
    help: str
    module: str = ""
    config: str = ""
    run: str = ""
    files: str = ""
    text: str | None = None
    data: tuple[str, str] | None = None
    quick: str = ""
    out: str = ""
    ray: bool = False
    model: tuple[str | None, str] | None = None
    options: Mapping[str, tuple | str] = field(default_factory=dict)
    arguments: Mapping[str, dict] = field(default_factory=dict)
    fields: Callable[[argparse.Namespace], dict] | None = None
    profiles: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    default_profile: str | None = None
    variants: Mapping[str, tuple[str, str | None, str, str]] = field(default_factory=dict)
    constants: Mapping[str, object] = field(default_factory=dict)
    quick_method: str | None = "quick"
    same_as: str | None = None

    def __post_init__(self):
        """The conventions: ``module``, ``run`` and ``out`` named after the sub-command, options as (type, help)."""
        object.__setattr__(self, "options", {name: (positive_int, spec) if isinstance(spec, str) else spec
                                             for name, spec in self.options.items()})
        if self.same_as is None:
            module = self.module or self.name.replace("-", "_")
            object.__setattr__(self, "module", module)
            object.__setattr__(self, "run", self.run or f"reproduce_{module}")
            object.__setattr__(self, "out", self.out or f"results/reproduce-{self.name}")


def count(default: int, about: str) -> dict:
    """A sub-command's own positive-integer argument (``add_argument`` keywords), its help ``about`` and default."""
    return dict(type=positive_int, default=default, help=f"{about} (default {default})")


def finished(text: str, out: str, files: str = "") -> int:
    """Print a run's ``text`` and where its results (``files``) are; the sub-command's exit status."""
    print(text, end="")
    print(f"results in {out}" + (f" ({files})" if files else ""))
    return 0


def config_of(study: Study, args: argparse.Namespace):
    """The experiment's config from the parsed arguments (see the module docstring)."""
    experiment = importlib.import_module(f"fedleak.experiments.{study.module}")
    config_type = getattr(experiment, study.config)
    fields = {"seed": args.seed, "device": args.device}
    if study.fields is not None:
        fields.update(study.fields(args))
    else:
        if study.data is not None:
            fields.update(dataset=args.dataset, root=args.root)
        if getattr(args, "model", None) is not None:
            fields.update(model=args.model.name, model_options=args.model.options)
        for name in study.arguments:
            value = getattr(args, name)
            fields[name] = tuple(value) if isinstance(value, list) else value
    fields.update(study.constants)
    fields.update(profile_overrides(args))
    profile = next((method for flag, (method, _) in study.profiles.items() if getattr(args, flag)), None)
    if profile is None:
        profile = study.quick_method if args.quick else study.default_profile
    return getattr(config_type, profile)(**fields) if profile else config_type(**fields)


def run_study(study: Study, args: argparse.Namespace) -> int:
    experiment = importlib.import_module(f"fedleak.experiments.{study.module}")
    run, text, files = study.run, study.text, study.files
    for flag, (variant_run, variant_text, variant_files, _) in study.variants.items():
        if getattr(args, flag):
            run, text, files = variant_run, variant_text, variant_files
    result = getattr(experiment, run)(config_of(study, args), args.out,
                                      **({"ray": args.ray} if study.ray else {}))
    return finished(getattr(experiment, text)(result) if text else result["text"], args.out, files)


def add(study: Study, subparsers) -> argparse.ArgumentParser:
    """The sub-command of ``study`` under ``subparsers``."""
    parser = subparsers.add_parser(study.name, help=study.help)
    if study.same_as is not None:
        importlib.import_module(f"fedleak.commands.{study.same_as}").add_arguments(parser)
        return parser
    if study.data is not None:
        add_data_arguments(parser, dataset=study.data[0], help=study.data[1])
    if study.model is not None:
        parser.add_argument("--model", type=parse_model, default=study.model[0], help=study.model[1])
    if study.profiles:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--quick", action="store_true", help=study.quick)
        for flag, (_, about) in study.profiles.items():
            group.add_argument(f"--{flag}", action="store_true", help=about)
        add_profile_options(parser, quick=None, **study.options)
    else:
        add_profile_options(parser, quick=study.quick, **study.options)
    for name, keywords in {**study.arguments, **{flag: {"action": "store_true", "help": about}
                                                 for flag, (_, _, _, about) in study.variants.items()}}.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **keywords)
    add_run_arguments(parser, out=study.out, ray=study.ray)
    parser.set_defaults(func=lambda args: run_study(study, args))
    return parser
