"""``fedleak ablation``: Table 4 of paper 001, every combination of Dropout, DP-SGD, pruning and a privacy module,
scored for privacy (CDIA's SSIM and ASR) and utility (FedAvg accuracy), resumable."""
from __future__ import annotations

from fedleak.commands.common import (add_data_arguments, add_profile_options, add_run_arguments, int_list, names,
                                     parse_model, parse_size, positive_int, profile_overrides)
from fedleak.experiments.ablation import format_table, run_ablation
from fedleak.study.ablation import ROWS, AblationConfig


def config_from_args(args) -> AblationConfig:
    overrides = {"dataset": args.dataset, "model": args.model.name, "model_options": args.model.options,
                 "root": args.root, "size": args.size, "device": args.device, "seed": args.seed,
                 **profile_overrides(args)}
    if args.rows:
        overrides["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if args.privacy_only:
        overrides["utility"] = False
    return AblationConfig.quick(**overrides) if args.quick else AblationConfig(**overrides)


def run(args) -> int:
    config = config_from_args(args)
    table = run_ablation(config, args.out, ray=args.ray)
    utility = f"FedAvg accuracy over seeds {list(config.seeds)}" if config.utility else "no FedAvg runs"
    model_state = f"trained {config.trained_epochs} epochs" if config.trained_epochs else "untrained"
    print(f"\nTable 4 ablation, {args.model} ({model_state}) on {config.dataset} ({config.profile} profile: "
          f"{config.victims} victims, CDIA SSIM/ASR; {utility})")
    print(format_table(table))
    print(f"\nresults in {args.out} (table.txt, table.csv, reconstructions.png, cells.jsonl)")
    return 0


def add_arguments(parser) -> None:
    """The options of ``fedleak ablation`` (also ``fedleak reproduce ablation``)."""
    add_data_arguments(parser, dataset=None, help="dataset name, e.g. bundled, mnist, cifar10")
    parser.add_argument("--model", required=True, type=parse_model,
                        help="model name and options, e.g. cnn, resnet18:norm=group (Table 5), vit_small")
    parser.add_argument("--size", type=parse_size, default=(32, 32),
                        help="resize images (default 32x32: the cnn needs at least 29x29 inputs)")
    parser.add_argument("--rows", default=None,
                        help="comma-separated rows by label or 1-based position (default all 24): "
                             + ", ".join(row.label for row in ROWS))
    add_profile_options(
        parser, quick="8 victims, 300 attack iterations, 8 FL rounds, one seed (about 30 min on 2 cores)",
        victims=(positive_int, "victim images (default 128, quick 8)"),
        attack_iterations=(positive_int, "short attack of this many iterations (default: the full schedule; quick "
                                         "300)"),
        rounds=(positive_int, "FL rounds (default 300 with early stopping)"),
        seeds=(int_list, "utility seeds, e.g. 0,1,2 (default 0,1,2; quick: --seed)"),
        attacks=(names, "attacks of the privacy part, e.g. cdia (default cdia,ig)"),
        trained_epochs=(positive_int, "attack a model trained this many epochs (with the row's modules) instead of "
                                      "an untrained one; paper 001 does not state which"))
    parser.add_argument("--privacy-only", action="store_true", help="only the attacks (no FedAvg utility runs)")
    add_run_arguments(parser, out="results/ablation", ray=True)
    parser.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("ablation", help="defense-combination ablation of Scheliga et al. (Table 4)"))
