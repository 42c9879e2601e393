"""``fedleak reproduce EXPERIMENT``: re-run a paper's tables and figures (one sub-command per experiment)."""
from __future__ import annotations

from fedleak.commands.common import add_run_arguments, positive_int
from fedleak.experiments.loki import LokiReproductionConfig, report, reproduce_loki
from fedleak.experiments.trap_weights import TrapReproductionConfig, reproduce_trap_weights


def run_trap_weights(args) -> int:
    config = TrapReproductionConfig(dataset=args.dataset, root=args.root, colour_dataset=args.colour_dataset,
                                    colour_root=args.colour_root, runs=args.runs, tables=tuple(args.tables),
                                    seed=args.seed, device=args.device)
    result = reproduce_trap_weights(config, args.out)
    print(result["text"], end="")
    print(f"results in {args.out}")
    return 0


def run_loki(args) -> int:
    config = LokiReproductionConfig(dataset=args.dataset, root=args.root, num_clients=args.clients,
                                    images_per_client=args.images_per_client, local_steps=args.local_steps,
                                    rounds=args.rounds or (1 if args.quick else 5), num_bins=args.bins,
                                    seed=args.seed, device=args.device)
    print(report(reproduce_loki(config, args.out)), end="")
    print(f"results in {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="reproduce a paper's tables and figures")
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    trap = experiments.add_parser(
        "trap-weights", help="Boenisch et al. Tables 2, 5, 6, 9 and Figs. 9-10 (passive attack, trap weights)")
    trap.add_argument("--dataset", default="fashion_mnist",
                      help="grey-scale dataset for the FC-NN (default fashion_mnist; mnist with --root DIR)")
    trap.add_argument("--root", default=None, help="folder of --dataset (default: its standard location)")
    trap.add_argument("--colour-dataset", default="skimage_photos",
                      help="colour dataset for the CNN (default skimage_photos; cifar10 or imagefolder with "
                           "--colour-root DIR)")
    trap.add_argument("--colour-root", default=None, help="folder of --colour-dataset")
    trap.add_argument("--runs", type=positive_int, default=10, help="runs per cell (the paper uses 10; default 10)")
    trap.add_argument("--tables", nargs="+", default=["2", "5", "6", "9"], choices=["2", "5", "6", "9"],
                      help="which tables to run (default all)")
    add_run_arguments(trap, out="results/trap-weights")
    trap.set_defaults(func=run_trap_weights)
    loki = experiments.add_parser(
        "loki", help="LOKI (Zhao et al.) leak rate per FedAvg round through secure aggregation")
    loki.add_argument("--quick", action="store_true", help="one round (default: 5 rounds, each attacked)")
    loki.add_argument("--rounds", type=positive_int, default=None, help="rounds, each attacked (overrides --quick)")
    loki.add_argument("--clients", type=positive_int, default=10, help="clients (default 10)")
    loki.add_argument("--images-per-client", type=positive_int, default=64, help="images per client (default 64)")
    loki.add_argument("--local-steps", type=positive_int, default=4, help="local SGD steps per round (default 4)")
    loki.add_argument("--bins", type=positive_int, default=512, help="imprint bins (default 512)")
    loki.add_argument("--dataset", default="bundled", help="image dataset (default bundled)")
    loki.add_argument("--root", default=None, help="folder of --dataset")
    add_run_arguments(loki, out="results/loki")
    loki.set_defaults(func=run_loki)
