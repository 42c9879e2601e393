"""The parts every ``fedleak reproduce`` sub-command is built from: its row of ``--list`` (:class:`Experiment`),
:func:`add_study` (data, profile and run arguments), :func:`runner` (config from the arguments, run, print) and
:func:`finished`."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from fedleak.commands.common import add_data_arguments, add_profile_options, add_run_arguments, profile_overrides


@dataclass(frozen=True)
class Experiment:
    """One row of ``--list``: the sub-command, the paper (file number in /work/shared/papers and authors), what it
    reproduces, the measured time of its quick profile, and the function that adds its parser."""

    name: str
    paper: str
    reproduces: str
    quick: str
    add: Callable


def finished(text: str, out: str, files: str = "") -> int:
    """Print a run's ``text`` and where its results (``files``) are; the sub-command's exit status."""
    print(text, end="")
    print(f"results in {out}" + (f" ({files})" if files else ""))
    return 0


def runner(module: str, config: str, reproduce: str, files: str, extra: Callable | None = None) -> Callable:
    """A sub-command's ``func``: the config ``fedleak.experiments.<module>.<config>`` (its ``quick()`` profile with
    ``--quick``) from the common arguments, ``--model``, the profile options given (:func:`~fedleak.commands.common.
    profile_overrides`) and ``extra(args)``; it runs ``<reproduce>(config, out)`` (with ``ray=`` where the
    sub-command takes ``--ray``) and prints its text and the ``files`` it wrote. The module is imported on use, so
    that ``fedleak --help`` stays fast."""

    def run(args) -> int:
        experiment = importlib.import_module(f"fedleak.experiments.{module}")
        overrides = {"dataset": args.dataset, "root": args.root, "seed": args.seed, "device": args.device}
        if getattr(args, "model", None) is not None:
            overrides.update(model=args.model.name, model_options=args.model.options)
        overrides.update(profile_overrides(args))
        overrides.update(extra(args) if extra is not None else {})
        config_type = getattr(experiment, config)
        settings = config_type.quick(**overrides) if args.quick else config_type(**overrides)
        result = getattr(experiment, reproduce)(settings, args.out, **({"ray": args.ray} if "ray" in args else {}))
        return finished(result["text"], args.out, files)

    return run


def add_study(experiments, name: str, help: str, *, data: tuple[str, str], quick: str, out: str, func: Callable,
              ray: bool = False, **options: tuple):
    """A sub-command made of the common parts: ``--dataset`` (default and help ``data``) and ``--root``,
    ``--quick`` and the profile ``options`` (:func:`~fedleak.commands.common.add_profile_options`), the run's
    arguments, and ``func`` (usually a :func:`runner`); returns its parser for any argument of its own."""
    parser = experiments.add_parser(name, help=help)
    add_data_arguments(parser, dataset=data[0], help=data[1])
    add_profile_options(parser, quick=quick, **options)
    add_run_arguments(parser, out=out, ray=ray)
    parser.set_defaults(func=func)
    return parser
