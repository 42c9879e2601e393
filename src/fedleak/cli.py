"""The ``fedleak`` command. Each sub-command lives in a module of :mod:`fedleak.commands` that defines
``register(subparsers)``; its parser's ``func(args) -> int`` runs it."""
from __future__ import annotations

import argparse
import importlib
import sys

from fedleak.registry import UnknownNameError

COMMAND_MODULES = ("train", "demo", "list", "data", "reproduce", "ablation", "detect_eval", "flower_demo", "audit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedleak", description="Gradient leakage in federated learning: attacks, defenses and client-side detection.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"fedleak.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UnknownNameError, ValueError, FileNotFoundError) as error:
        print(f"fedleak {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder that vanished: one line naming the file
        where = f" ({error.filename})" if error.filename else ""
        print(f"fedleak {args.command}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
