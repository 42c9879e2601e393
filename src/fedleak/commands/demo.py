"""``fedleak demo``: the end-to-end demo on the bundled data."""
from __future__ import annotations

import json
from pathlib import Path

from fedleak.commands.common import add_run_arguments
from fedleak.experiments.demo import run_demo


def run(args) -> int:
    figures = run_demo(args.out, device=args.device, seed=args.seed)
    Path(args.out, "demo.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\ndemo results in {args.out}; now audit your own model and data: fedleak audit --model cnn --data bundled "
          "--quick --out results/audit (README, 'Audit your own model')")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="end-to-end demo on the bundled data")
    add_run_arguments(parser, out="results/demo")
    parser.set_defaults(func=run)
