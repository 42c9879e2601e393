"""Arguments shared by sub-commands."""
from __future__ import annotations

import argparse


def add_run_arguments(parser: argparse.ArgumentParser, *, out: str) -> None:
    """``--seed``, ``--device`` and ``--out`` (the results folder), which every experiment takes."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--out", default=out, help=f"results folder (default {out})")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"32"`` or ``"32x28"`` -> (H, W)."""
    if not text:
        return None
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 32 or 32x32, got {text!r}") from None
    return (size[0], size[0]) if len(size) == 1 else size[:2]
