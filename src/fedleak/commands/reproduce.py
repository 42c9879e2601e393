"""``fedleak reproduce EXPERIMENT``: re-run a paper's tables and figures, one sub-command per experiment;
``fedleak reproduce --list`` prints them with their paper, tables and the time of their ``--quick`` profile.

Each sub-command is one function that adds its parser (and sets ``func``) plus one row of :data:`EXPERIMENTS`.
"""
from __future__ import annotations

from fedleak.commands.common import (add_data_arguments, add_profile_options, add_run_arguments, parse_model,
                                     parse_size, positive_float, positive_int, profile_overrides)
from fedleak.commands.reproduce_attacks import (add_bn_prior, add_dager, add_fedavg_inversion,
                                                add_inconsistency_secagg, add_qbi, add_spear)
from fedleak.commands.studies import Experiment, add_study, finished, runner


def run_trap_weights(args) -> int:
    from fedleak.experiments.trap_weights import TrapReproductionConfig, reproduce_trap_weights

    options = dict(dataset=args.dataset, root=args.root, colour_dataset=args.colour_dataset,
                   colour_root=args.colour_root, tables=tuple(args.tables), seed=args.seed, device=args.device,
                   **profile_overrides(args))
    config = TrapReproductionConfig.quick(**options) if args.quick else TrapReproductionConfig(**options)
    return finished(reproduce_trap_weights(config, args.out, ray=args.ray)["text"], args.out)


def add_trap_weights(experiments) -> None:
    trap = experiments.add_parser(
        "trap-weights", help="Boenisch et al. Tables 2, 5, 6, 9 and Figs. 9-10 (passive attack, trap weights)")
    from fedleak.data import DATASETS, dataset_options

    names = ", ".join(name for name in DATASETS.names() if "size" in dataset_options(name))  # the image datasets
    add_data_arguments(trap, dataset="fashion_mnist",
                       help=f"grey-scale dataset for the FC-NN, one of {names} (default fashion_mnist; mnist with "
                            "--root DIR); Table 9 draws batches of 2000, Table 6 of 200")
    trap.add_argument("--colour-dataset", default="skimage_photos",
                      help=f"colour dataset for the CNN, one of {names} (default skimage_photos; cifar10 or "
                           "imagefolder with --colour-root DIR)")
    trap.add_argument("--colour-root", default=None, help="folder of --colour-dataset")
    add_profile_options(trap, quick="Tables 2 and 5 at the paper's 10 runs per cell, Tables 6 and 9 at 3 (~7 min)",
                        runs=(positive_int, "runs per cell (the paper uses 10; default 10)"),
                        sweep_runs=(positive_int, "runs per cell of Tables 6 and 9 (default: --runs; quick 3)"))
    trap.add_argument("--tables", nargs="+", default=["2", "5", "6", "9"], choices=["2", "5", "6", "9"],
                      help="which tables to run (default all)")
    add_run_arguments(trap, out="results/trap-weights", ray=True)
    trap.set_defaults(func=run_trap_weights)


def add_trap_arguments(parser, *, dataset: str, model: str, quick: str, runs: str, out: str, **options) -> None:
    """The arguments of the trap-weights defense studies (:class:`~fedleak.experiments.trap_weights.
    TrapStudyConfig`): data, model, ``--quick``, runs, batch size, s, the study's own ``options`` and the run's."""
    add_data_arguments(parser, dataset=dataset, help=f"dataset (default {dataset}; mnist with --root DIR)")
    parser.add_argument("--model", type=parse_model, default=None, help=f"model and options ({model})")
    add_profile_options(parser, quick=quick, runs=(positive_int, runs),
                        batch_size=(positive_int, "batch size B (default 100)"),
                        scale_factor=(positive_float, "trap weights s (default 0.7)"), **options)
    add_run_arguments(parser, out=out, ray=True)


def add_dp(experiments) -> None:
    dp = experiments.add_parser(
        "dp", help="Boenisch et al. §9 / Fig. 4: trap weights under clipping alone, then local DP noise (exact and "
                   "near-exact recall vs sigma)")
    add_trap_arguments(dp, dataset="fashion_mnist", model="default: the FC-NN of Table 7, quick: fcnn:widths=1000+64",
                       quick="3 runs per cell on a narrow FC-NN (minutes on 2 cores)",
                       runs="runs per cell (default 10, quick 3)", out="results/reproduce-dp")
    dp.set_defaults(func=runner("trap_dp", "TrapDPConfig", "reproduce_trap_dp",
                                "table.txt, table.csv, comparison.md, recall_vs_sigma.png, extractions.png"))


def add_pruning(experiments) -> None:
    pruning = experiments.add_parser(
        "pruning", help="Boenisch et al. §9.3: trap weights under gradient pruning (exact and near-exact recall vs p)")
    add_trap_arguments(pruning, dataset="fashion_mnist", model="default: the FC-NN of Table 7",
                       quick="3 runs per rate", runs="runs per rate (default 10, quick 3)",
                       out="results/reproduce-pruning")
    pruning.set_defaults(func=runner("trap_pruning", "TrapPruningConfig", "reproduce_trap_pruning",
                                     "table.txt, table.csv, comparison.md, recall_vs_p.png, extractions.png"))


def add_fedavg(experiments) -> None:
    fedavg = experiments.add_parser(
        "fedavg", help="Boenisch et al. §8.4: trap weights against FedAvg updates (exact and near-exact recall vs "
                       "the clients' learning rate and local steps)")
    add_trap_arguments(fedavg, dataset="bundled",
                       model="default: the FC-NN of Table 7; quick fcnn:widths=1000+64",
                       quick="one run on a narrow FC-NN", runs="runs per cell (default 3, quick 1)",
                       out="results/reproduce-fedavg",
                       clients=(positive_int, "attacked clients per run (default 10)"))
    fedavg.set_defaults(func=runner("trap_fedavg", "TrapFedAvgConfig", "reproduce_trap_fedavg",
                                    "table.txt, table.csv, comparison.md, recall_vs_lr.png"))


def add_passive_training(experiments) -> None:
    passive = add_study(
        experiments, "passive-training", "Boenisch et al. Table 4: passive extraction as the FC-NN trains (epochs 0-30)",
        data=("fashion_mnist", "dataset (default fashion_mnist, else the bundled sample; mnist with --root DIR)"),
        quick="a 1000+64 FC-NN, 3 runs", out="results/reproduce-passive-training", ray=True,
        func=runner("passive_training", "PassiveTrainingConfig", "reproduce_passive_training",
                    "table.txt, table.csv, comparison.md",
                    extra=lambda args: {} if args.widths is None else {"model_options": {"widths": args.widths}}),
        runs=(positive_int, "trainings (default 10, quick 3)"))
    passive.add_argument("--widths", type=lambda text: tuple(positive_int(t) for t in text.split("+")), default=None,
                         help="FC-NN widths, e.g. 1000+64 (default Table 7's 1000+3000+3000+2000+1000)")


def add_vs_inversion(experiments) -> None:
    add_study(experiments, "vs-inversion",
              "Boenisch et al. §8.5: trap-weights extraction vs gradient inversion (IG), B = 1",
              data=("fashion_mnist", "dataset (default fashion_mnist, else the bundled sample; mnist with --root DIR)"),
              quick="8 images, IG 1,000 iterations, a 1000+64 FC-NN", out="results/reproduce-vs-inversion",
              func=runner("vs_inversion", "VsInversionConfig", "reproduce_vs_inversion",
                          "table.txt, table.csv, comparison.md, reconstructions.png"),
              images=(positive_int, "images (default 16, quick 8)"),
              iterations=(positive_int, "IG iterations (default: the full schedule; quick 1000)"),
              scale_factor=(positive_float, "trap weights s (default 0.9)"))


def add_text(experiments) -> None:
    add_study(experiments, "text",
              "Boenisch et al. Table 3: passive and trap-weights text extraction on the IMDB model of Table 8 "
              "(B = 20, 50, 100, 200)",
              data=("fortunes", "text dataset (default fortunes: Debian's fortunes corpus, /usr/share/games/fortunes; "
                                "imdb with --root DIR, the unpacked aclImdb folder)"),
              quick="3 runs per cell", out="results/reproduce-text",
              func=runner("trap_text", "TrapTextConfig", "reproduce_trap_text", "table.txt, table.csv, comparison.md"),
              runs=(positive_int, "runs per cell (default 10, quick 3)"),
              scale_factor=(positive_float, "trap weights s of the active attack (default 0.99)"))


def add_architectures(experiments) -> None:
    add_study(experiments, "architectures",
              "Scheliga et al. Table 5: the ablation's promising rows on a ResNet-18 with group norm and a ViT (CDIA "
              "SSIM/ASR, FedAvg accuracy)",
              data=("bundled", "dataset name (default bundled; mnist, cifar10 with --root DIR)"),
              quick="narrow models (ResNet-18 width 16, ViT width 64), 4 victims, 200 attack iterations, 2 FedAvg "
                    "rounds",
              out="results/reproduce-architectures",
              func=runner("architectures", "ArchitecturesConfig", "reproduce_architectures",
                          "table.txt, table.csv, comparison.md; per model: cells, reconstructions.png"),
              size=(parse_size, "resize images (default 32x32)"),
              victims=(positive_int, "victim images (default 128, quick 4)"),
              attack_iterations=(positive_int, "short attack of this many iterations (default: the full schedule; "
                                               "quick 200)"),
              rounds=(positive_int, "FedAvg rounds (default 300, quick 2)"))


def run_defense_table(args) -> int:
    from fedleak.experiments.inversion_defenses import DefenseTableConfig, run_defense_table as run_table

    overrides = {"dataset": args.dataset, "root": args.root, "size": args.size, "model": args.model.name,
                 "model_options": args.model.options, "seed": args.seed, "device": args.device,
                 **profile_overrides(args)}
    config = (DefenseTableConfig.quick(args.table, **overrides) if args.quick
              else DefenseTableConfig(args.table, **overrides))
    return finished(run_table(config, args.out, ray=args.ray)["text"], args.out,
                    "table.txt, table.csv, comparison.md, reconstructions.png, cells.jsonl")


def _add_defense_table(experiments, name: str, table: str, help: str) -> None:
    """The parser of one of paper 001's single-defense tables (``fedleak.experiments.inversion_defenses``)."""
    parser = experiments.add_parser(name, help=help)
    add_data_arguments(parser, dataset="bundled", help="dataset name (default bundled; mnist, cifar10 with --root DIR)")
    parser.add_argument("--size", type=parse_size, default=(32, 32), help="resize images (default 32x32)")
    parser.add_argument("--model", type=parse_model, default="cnn",
                        help="model and options (default cnn; e.g. vit_small, resnet18:norm=group)")
    add_profile_options(parser, quick="8 victims, 300 attack iterations",
                        victims=(positive_int, "victim images (default 128, quick 8)"),
                        attack_iterations=(positive_int, "short attack of this many iterations (default: the full "
                                                         "schedule; quick 300)"))
    add_run_arguments(parser, out=f"results/reproduce-{name}", ray=True)
    parser.set_defaults(func=run_defense_table, table=table)


def add_defenses_dp(experiments) -> None:
    _add_defense_table(experiments, "defenses-dp", "dp", "Scheliga et al. Table 1: IG, WIIG, DPIA against DP-SGD "
                                                         "(sigma 1e-4, 1e-3)")


def add_defenses_pruning(experiments) -> None:
    _add_defense_table(experiments, "defenses-pruning", "pruning", "Scheliga et al. Table 2: IG and GPIA against "
                                                                   "gradient pruning (p 0.9, 0.95, 0.99)")


def add_defenses_modules(experiments) -> None:
    _add_defense_table(experiments, "defenses-modules", "modules", "Scheliga et al. Table 3: PIG, WIIG, VBIA "
                                                                   "against PRECODE and CVB")


def add_ablation(experiments) -> None:
    from fedleak.commands import ablation

    ablation.add_arguments(experiments.add_parser(
        "ablation", help="Scheliga et al. Table 4: every combination of Dropout, DP, pruning and a privacy module "
                         "(the same as `fedleak ablation`; Table 5 with --model resnet18:norm=group or vit_small)"))


def add_detection(experiments) -> None:
    from fedleak.commands import detect_eval

    detect_eval.add_arguments(experiments.add_parser(
        "detection", help="Wang & Li Table 1, Figs. 2-3: the client-side detectors against the malicious-server "
                          "attacks (the same as `fedleak detect-eval`)"))


def run_loki(args) -> int:
    from fedleak.experiments.loki import LokiReproductionConfig, report, report_secagg, reproduce_loki
    from fedleak.fl import FederationSpec

    config = LokiReproductionConfig(federation=FederationSpec(dataset=args.dataset, root=args.root),
                                    num_clients=args.clients, images_per_client=args.images_per_client,
                                    local_steps=args.local_steps, rounds=args.rounds or (1 if args.quick else 5),
                                    attack_options={"num_bins": args.bins},
                                    seed=args.seed, device=args.device)
    if args.flower_secagg:
        from fedleak.experiments.loki import reproduce_loki_secagg

        return finished(report_secagg(reproduce_loki_secagg(config, args.out)), args.out)
    return finished(report(reproduce_loki(config, args.out)), args.out)


def add_loki(experiments) -> None:
    loki = experiments.add_parser(
        "loki", help="LOKI (Zhao et al.) leak rate per FedAvg round through secure aggregation")
    loki.add_argument("--quick", action="store_true", help="one round (default: 5 rounds, each attacked)")
    loki.add_argument("--rounds", type=positive_int, default=None, help="rounds, each attacked (overrides --quick)")
    loki.add_argument("--clients", type=positive_int, default=10, help="clients (default 10)")
    loki.add_argument("--images-per-client", type=positive_int, default=64, help="images per client (default 64)")
    loki.add_argument("--local-steps", type=positive_int, default=4, help="local SGD steps per round (default 4)")
    loki.add_argument("--bins", type=positive_int, default=512, help="imprint bins (default 512)")
    loki.add_argument("--flower-secagg", action="store_true",
                      help="through Flower's real SecAgg+ (simulation engine): one round per aggregation (plain "
                           "float mean, SecAgg+ defaults, a sweep of clipping and quantisation ranges, the "
                           "attacker's adapted kernels), same clients and seed")
    add_data_arguments(loki, dataset="bundled", help="image dataset (default bundled)")
    add_run_arguments(loki, out="results/loki")
    loki.set_defaults(func=run_loki)


def run_seer(args) -> int:
    from fedleak.experiments.seer import SeerReproductionConfig, reproduce_seer

    profile = SeerReproductionConfig.paper if args.paper else (
        SeerReproductionConfig.quick if args.quick else SeerReproductionConfig.with_training)
    options = {"steps": args.steps, "batch_size": args.batch_size}
    summary = reproduce_seer(profile(dataset=args.dataset, root=args.root, seed=args.seed, device=args.device,
                                     **{k: v for k, v in options.items() if v is not None}), args.out)
    return finished(summary["text"], args.out, "results.json, table.txt, table.csv, decoded.png")


def add_seer(experiments) -> None:
    seer = experiments.add_parser(
        "seer", help="SEER (Garov et al.) decoded brightest image: batch vs group vs layer norm, and FedAvg")
    mode = seer.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="load the checkpoints shipped with fedleak (no training), 30 held-out batches")
    mode.add_argument("--paper", action="store_true",
                      help="the paper's scale: full-width ResNet-18, batch 64, long training (use --device cuda)")
    seer.add_argument("--steps", type=positive_int, default=None, help="training steps per norm (default 4000)")
    seer.add_argument("--batch-size", type=positive_int, default=None, help="client batch size (default 16)")
    add_data_arguments(seer, dataset="bundled", help="image dataset, read at 32x32 (default bundled)")
    add_run_arguments(seer, out="results/seer")
    seer.set_defaults(func=run_seer)


def add_s4(experiments) -> None:
    add_study(experiments, "hear-no-evil-s4",
              "Wang & Li §4: SEER vs norm and batch size, after FedSGD rounds and FedAvg epochs; the detectors on "
              "SEER, LOKI and model inconsistency",
              data=("bundled", "image dataset, read at 32x32 (default bundled)"),
              quick="batch sizes 4 and 16 (shipped SEER checkpoints), FedAvg up to 3 epochs",
              out="results/hear-no-evil-s4",
              func=runner("hear_no_evil_s4", "S4Config", "reproduce_s4",
                          "table.txt, norms.csv, rounds.csv, detection.csv, leakage.png, results.json"))


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("trap-weights", "002 Boenisch et al.", "Tables 2, 5, 6, 9; Figs. 9-10",
               "~7 min (343 CPU-s measured)",
               add_trap_weights),
    Experiment("text", "002 Boenisch et al.", "Table 3 (text, IMDB model; fortunes when IMDB is absent)",
               "~3 min (2.6 CPU-min measured)", add_text),
    Experiment("dp", "002 Boenisch et al.", "§9, Fig. 4 (clipping, local DP)", "~4 min", add_dp),
    Experiment("pruning", "002 Boenisch et al.", "§9.3 (gradient pruning)", "~2 min", add_pruning),
    Experiment("fedavg", "002 Boenisch et al.", "§8.4 (FedAvg updates)", "~1 min", add_fedavg),
    Experiment("passive-training", "002 Boenisch et al.", "Table 4 (passive extraction during training)", "~1 min",
               add_passive_training),
    Experiment("vs-inversion", "002 Boenisch et al.", "§8.5 (trap weights vs IG, B = 1)", "~3 min",
               add_vs_inversion),
    Experiment("defenses-dp", "001 Scheliga et al.", "Table 1 (DP: IG, WIIG, DPIA)", "~5 min", add_defenses_dp),
    Experiment("defenses-pruning", "001 Scheliga et al.", "Table 2 (pruning: IG, GPIA)", "~4 min",
               add_defenses_pruning),
    Experiment("defenses-modules", "001 Scheliga et al.", "Table 3 (PRECODE, CVB: PIG, WIIG, VBIA)", "~6 min",
               add_defenses_modules),
    Experiment("ablation", "001 Scheliga et al.", "Table 4 (24 defense combinations; = fedleak ablation)",
               "~30 min (its --help)", add_ablation),
    Experiment("architectures", "001 Scheliga et al.", "Table 5 (ResNet-18 with group norm, ViT)",
               "~17 min (16.5 CPU-min measured)", add_architectures),
    Experiment("detection", "000 Wang & Li", "Table 1, Figs. 2-3 (= fedleak detect-eval)", "~9 min",
               add_detection),
    Experiment("loki", "000 Wang & Li, ref. [49] Zhao et al.",
               "LOKI leak rate (10 clients x 64, FedAvg, SecAgg); --flower-secagg: through Flower's SecAgg+",
               "~1 min; --flower-secagg ~11 min (130 CPU-s)", add_loki),
    Experiment("secagg-inconsistency", "000 Wang & Li, ref. [31] Pasquini et al.",
               "model inconsistency + trap weights through Flower's SecAgg+", "~5 min", add_inconsistency_secagg),
    Experiment("seer", "000 Wang & Li, ref. [14] Garov et al.", "SEER SSIM: BN vs GN vs LN, FedAvg (§4.1)",
               "~10 s (shipped checkpoints; training ~30 min)", add_seer),
    Experiment("hear-no-evil-s4", "000 Wang & Li", "§4: SEER vs BN/GN/LN and batch size, FedSGD/FedAvg, detectors",
               "~4-5 min", add_s4),
    Experiment("bn-prior", "Yin et al. 2021 (issue 24)", "BN prior vs none, BN CNN (full: ResNet-18), B = 8 (SSIM)",
               "~3 min (186 s measured, loaded)", add_bn_prior),
    Experiment("fedavg-inversion", "Dimitrov et al. 2022 (issue 24)",
               "images >= 20 dB from FedAvg updates: FedAvg inversion vs IG", "~3 min (196 s measured, loaded)",
               add_fedavg_inversion),
    Experiment("dager", "Petrov et al. 2024 (DAGER; issue 25)", "exact text recovery from LM gradients, full and LoRA",
               "~3 min (3m07s measured, loaded)", add_dager),
    Experiment("spear", "Dimitrov et al. (NeurIPS 2024)", "SPEAR exact batch recovery rate per B (FedSGD, FedAvg)",
               "~8 min on a loaded machine (77 CPU-s measured)", add_spear),
    Experiment("qbi", "Nowak et al. (2024)", "QBI vs trap weights / Robbing the Fed (recall at the same N, B)",
               "~1 min (17 CPU-s measured)", add_qbi),
)


def list_experiments() -> str:
    """The ``--list`` table."""
    rows = [("sub-command", "paper", "reproduces", "--quick on 2 CPU cores")]
    rows += [(e.name, e.paper, e.reproduces, e.quick) for e in EXPERIMENTS]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="reproduce a paper's tables and figures (--list: which)")
    parser.add_argument("--list", action="store_true", help="list the experiments with their paper and quick time")
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for experiment in EXPERIMENTS:
        experiment.add(experiments)

    def listing(args) -> int:
        if not args.list:
            parser.error("choose an EXPERIMENT, or --list to see them")
        print(list_experiments())
        return 0

    parser.set_defaults(func=listing)
