"""Arguments shared by sub-commands, and the converters that check every option as it is parsed, so that a bad
value ends in one ``error: argument --name: ...`` line before any work starts or any file is written."""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path


from fedleak.checks import check_device
from fedleak.registry import Choice


def add_run_arguments(parser: argparse.ArgumentParser, *, out: str, ray: bool = False) -> None:
    """``--seed``, ``--device`` and ``--out`` (the results folder), which every experiment takes; with ``ray``
    (an experiment grid) also ``--ray ADDRESS`` (:func:`fedleak.study.cells.run_cells`)."""
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**63 - 1 (default 0)")
    parser.add_argument("--device", type=parse_device, default="cpu",
                        help="torch device, e.g. cpu, cuda or cuda:1 (default cpu)")
    parser.add_argument("--out", type=parse_out, default=out, help=f"results folder (default {out})")
    if ray:
        parser.add_argument("--ray", metavar="ADDRESS", default=None,
                            help="run the independent cells as tasks on the Ray cluster at ADDRESS (auto: the one "
                                 "`ray start` joined; local: a new instance here); same results, same resume")


def add_data_arguments(parser: argparse.ArgumentParser, *, dataset: str | None, help: str) -> None:
    """``--dataset`` (``help``; required when ``dataset`` is None) and ``--root``, its folder."""
    parser.add_argument("--dataset", default=dataset, required=dataset is None, help=help)
    parser.add_argument("--root", default=None, help="folder of --dataset (default: its standard location)")


def add_profile_options(parser: argparse.ArgumentParser, *, quick: str | None, **options: tuple) -> None:
    """``--quick`` (the smaller profile ``quick`` describes; None: the caller adds it) and, for each
    ``name=(type, help)``, ``--name`` whose default None leaves the profile's value; :func:`profile_overrides`
    collects the ones given."""
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    for name, (kind, about) in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=about)
    parser.set_defaults(profile_options=tuple(options))


def profile_overrides(args: argparse.Namespace) -> dict:
    """The options of :func:`add_profile_options` given on the command line, by their config field's name."""
    return {name: getattr(args, name) for name in args.profile_options if getattr(args, name) is not None}


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"32"`` or ``"32x28"`` -> (H, W), positive."""
    if not text:
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 32 or 32x32, got {text!r}") from None
    if len(size) > 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"size must be one or two positive integers (32 or 32x32), got {text!r}")
    return (size[0], size[0]) if len(size) == 1 else size


def parse_device(text: str) -> str:
    """A torch device present on this machine (:func:`fedleak.checks.check_device`)."""
    try:
        return check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_out(text: str) -> str:
    """A results folder that is (or can be created as) a writable folder; nothing is created yet."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    existing = path
    while not existing.exists():  # the nearest existing ancestor must let us create the rest
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} is a file, not a folder")
    try:  # a probe file: permission bits do not tell root's rights, nor those of read-only file systems
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError("permission denied")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise argparse.ArgumentTypeError(f"{text!r}: {existing} is not writable ({reason})") from None
    return text


def _number(text: str, convert, what: str, ok, bounds: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "an integer", lambda v: v >= 1, "a positive integer")


def positive_ints(text: str) -> tuple[int, ...]:
    """``"1+4+8"`` -> (1, 4, 8), each positive (batch sizes, layer widths)."""
    return tuple(positive_int(t) for t in text.split("+"))


def non_negative_int(text: str) -> int:
    return _number(text, int, "an integer", lambda v: v >= 0, "an integer >= 0")


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**63 - 1, so that it and the seeds derived from it by adding a
    round or a run stay within ``torch.manual_seed``'s 64 bits."""
    return _number(text, int, "an integer", lambda v: 0 <= v < 2**63, "an integer from 0 to 2**63 - 1")


def positive_float(text: str) -> float:
    return _number(text, float, "a number", lambda v: v > 0, "a finite number > 0")


def fraction(text: str) -> float:
    """A share in (0, 1]."""
    return _number(text, float, "a number", lambda v: 0 < v <= 1, "a number in (0, 1]")


def open_fraction(text: str) -> float:
    """A rate in (0, 1), e.g. a false-alarm rate."""
    return _number(text, float, "a number", lambda v: 0 < v < 1, "a number in (0, 1)")


def int_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): at least one integer >= 0."""
    values = tuple(non_negative_int(t.strip()) for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


ModelChoice = Choice  # a registered model and its options, as ``--model NAME:key=value:...`` gives them


def names(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ("a", "b", "c")."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _option_value(text: str):
    """``1000`` -> int, ``0.5`` -> float, ``true``/``false`` -> bool, ``1000+64`` -> a tuple, else the text."""
    if "+" in text:
        return tuple(_option_value(part) for part in text.split("+"))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_model(text: str) -> ModelChoice:
    """``resnet18:norm=group`` or ``fcnn:widths=1000+64``: a model of :data:`fedleak.models.MODELS` with its
    options (values read as int, float, true/false, ``+``-separated tuples, else text); the name and option names
    are checked now, the values when the model is built."""
    from fedleak.models import MODELS
    from fedleak.registry import UnknownNameError, UnknownOptionError

    name, *pairs = [part.strip() for part in text.split(":")]
    if name == "hf":  # hf:ARCH:f=v,f=v:lora=r8 (fedleak.models.huggingface.hf_options)
        from fedleak.models.huggingface import hf_options

        try:
            return ModelChoice(name, hf_options(text))
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"model {text!r}: option {pair!r} is not key=value")
        if key.strip() in options:
            raise argparse.ArgumentTypeError(f"model {text!r}: option {key.strip()!r} is given twice")
        options[key.strip()] = _option_value(value.strip())
    try:
        MODELS.check_options(name, options)
    except (UnknownNameError, UnknownOptionError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return ModelChoice(name, options)
