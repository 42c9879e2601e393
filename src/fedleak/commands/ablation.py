"""``fedleak ablation``: Table 4 of paper 001, every combination of Dropout, DP-SGD, pruning and a privacy module,
scored for privacy (CDIA's SSIM and ASR) and utility (FedAvg accuracy), resumable."""
from __future__ import annotations

from fedleak.commands.common import add_run_arguments, int_list, parse_model, parse_size, positive_int
from fedleak.experiments.ablation import ROWS, AblationConfig, format_table, run_ablation


def config_from_args(args) -> AblationConfig:
    overrides = {"dataset": args.dataset, "model": args.model.name, "model_options": args.model.options,
                 "root": args.root, "size": args.size, "device": args.device, "seed": args.seed}
    if args.rows:
        overrides["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    for name in ("victims", "attack_iterations", "rounds"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.seeds:
        overrides["seeds"] = args.seeds
    if args.attacks:
        overrides["attacks"] = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    if args.privacy_only:
        overrides["utility"] = False
    if args.trained_epochs:
        overrides["trained_epochs"] = args.trained_epochs
    return AblationConfig.quick(**overrides) if args.quick else AblationConfig(**overrides)


def run(args) -> int:
    config = config_from_args(args)
    table = run_ablation(config, args.out)
    utility = f"FedAvg accuracy over seeds {list(config.seeds)}" if config.utility else "no FedAvg runs"
    model_state = f"trained {config.trained_epochs} epochs" if config.trained_epochs else "untrained"
    print(f"\nTable 4 ablation, {args.model} ({model_state}) on {config.dataset} ({config.profile} profile: "
          f"{config.victims} victims, CDIA SSIM/ASR; {utility})")
    print(format_table(table))
    print(f"\nresults in {args.out} (table.txt, table.csv, reconstructions.png, cells.jsonl)")
    return 0


def add_arguments(parser) -> None:
    """The options of ``fedleak ablation`` (also ``fedleak reproduce ablation``)."""
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. bundled, mnist, cifar10")
    parser.add_argument("--model", required=True, type=parse_model,
                        help="model name and options, e.g. cnn, resnet18:norm=group (Table 5), vit_small")
    parser.add_argument("--root", default=None, help="data folder for datasets that need one")
    parser.add_argument("--size", type=parse_size, default=(32, 32),
                        help="resize images (default 32x32: the cnn needs at least 29x29 inputs)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated rows by label or 1-based position (default all 24): "
                             + ", ".join(row.label for row in ROWS))
    parser.add_argument("--quick", action="store_true",
                        help="8 victims, 300 attack iterations, 8 FL rounds, one seed (about 30 min on 2 cores)")
    parser.add_argument("--victims", type=positive_int, default=None, help="victim images (default 128, quick 8)")
    parser.add_argument("--attack-iterations", type=positive_int, default=None,
                        help="short attack of this many iterations (default: the full schedule; quick 300)")
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help="FL rounds (default 300 with early stopping)")
    parser.add_argument("--seeds", type=int_list, default=None,
                        help="utility seeds, e.g. 0,1,2 (default 0,1,2; quick: --seed)")
    parser.add_argument("--attacks", default=None, help="attacks of the privacy part (default cdia,ig)")
    parser.add_argument("--privacy-only", action="store_true", help="only the attacks (no FedAvg utility runs)")
    parser.add_argument("--trained-epochs", type=positive_int, default=None,
                        help="attack a model trained this many epochs (with the row's modules) instead of an "
                             "untrained one; paper 001 does not state which")
    add_run_arguments(parser, out="results/ablation")
    parser.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("ablation", help="defense-combination ablation of Scheliga et al. (Table 4)"))
