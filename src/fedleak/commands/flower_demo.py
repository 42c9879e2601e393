"""``fedleak flower-demo``: trap weights against Flower clients, without and with the detector mod (needs
``pip install 'fedleak[flower]'``)."""
from __future__ import annotations

from fedleak.commands.common import add_run_arguments, positive_int


def run(args) -> int:
    try:
        from fedleak.flower.demo import flower_demo
    except ImportError as error:
        raise ValueError(str(error)) from None
    figures = flower_demo(args.out, clients=args.clients, rounds=args.rounds, victims=args.victims,
                          attack_rounds=tuple(args.attack_rounds), device=args.device, seed=args.seed,
                          cpus=args.cpus, verbose=args.verbose)
    for title, run_figures in figures.items():
        print(f"\n{title}:")
        for key, value in run_figures.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in value.items())
            print(f"    {key}: {value}")
    print(f"\nresults in {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("flower-demo", help="Flower simulation: trap weights without and with the "
                                                       "client-side detector mod")
    parser.add_argument("--clients", type=positive_int, default=10, help="number of Flower clients (default 10)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="number of FL rounds (default 3)")
    parser.add_argument("--attack-rounds", type=positive_int, nargs="+", default=[3],
                        help="rounds in which the server sends trap weights (default 3)")
    parser.add_argument("--victims", type=positive_int, default=3, help="clients attacked per attack round (default 3)")
    parser.add_argument("--cpus", type=positive_int, default=None, help="CPUs for the simulation (default: all)")
    parser.add_argument("--verbose", action="store_true", help="show Flower's logs")
    add_run_arguments(parser, out="results/flower-demo")
    parser.set_defaults(func=run)
