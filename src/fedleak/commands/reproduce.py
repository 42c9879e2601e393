"""``fedleak reproduce EXPERIMENT``: re-run a paper's tables and figures, one sub-command per experiment;
``fedleak reproduce --list`` prints them with their paper, tables and the time of their ``--quick`` profile.

Each sub-command is one :class:`~fedleak.commands.studies.Study` row of :data:`EXPERIMENTS` (the three core
papers here, the attacks beyond them in :mod:`fedleak.commands.reproduce_attacks`), built by one builder.
"""
from __future__ import annotations

from fedleak.commands.common import parse_size, positive_float, positive_int, positive_ints
from fedleak.commands.reproduce_attacks import BEYOND
from fedleak.commands.studies import BUNDLED_IMAGES, Study, add, count
from fedleak.data import DATASETS, dataset_options
from fedleak.fl import FederationSpec

IMAGES = ", ".join(name for name in DATASETS.names() if "size" in dataset_options(name))
GREY = ("fashion_mnist", "dataset (default fashion_mnist; mnist with --root DIR)")
FASHION = ("fashion_mnist", "dataset (default fashion_mnist, else the bundled sample; mnist with --root DIR)")
ANY_IMAGES = ("bundled", "dataset name (default bundled; mnist, cifar10 with --root DIR)")
AT_32 = ("bundled", "image dataset, read at 32x32 (default bundled)")


def trap_study(name: str, paper: str, reproduces: str, quick_time: str, help: str, *, model: str, runs: str,
               options: dict | None = None, **study) -> Study:
    """A trap-weights defense study (:class:`~fedleak.study.extraction_cells.TrapStudyConfig`): data, model,
    ``--quick``, runs, batch size, s and the study's own ``options``."""
    return Study(name, paper, reproduces, quick_time, help, model=(None, f"model and options ({model})"), ray=True,
                 options={"runs": runs, "batch_size": "batch size B (default 100)",
                          "scale_factor": (positive_float, "trap weights s (default 0.7)"), **(options or {})}, **study)


def defense_table(name: str, table: str, reproduces: str, quick_time: str, help: str) -> Study:
    """One of paper 001's single-defense tables (:mod:`fedleak.experiments.inversion_defenses`)."""
    return Study(name, "001 Scheliga et al.", reproduces, quick_time, help, module="inversion_defenses",
                 config="DefenseTableConfig", run="run_defense_table",
                 files="table.txt, table.csv, comparison.md, reconstructions.png, cells.jsonl", data=ANY_IMAGES,
                 model=("cnn", "model and options (default cnn; e.g. vit_small, resnet18:norm=group)"),
                 quick="8 victims, 300 attack iterations", ray=True,
                 options={"victims": "victim images (default 128, quick 8)",
                          "attack_iterations": "short attack of this many iterations (default: the full schedule; "
                                               "quick 300)"},
                 arguments={"size": dict(type=parse_size, default=(32, 32), help="resize images (default 32x32)")},
                 constants={"table": table})


def loki_fields(args) -> dict:
    return {"federation": FederationSpec(dataset=args.dataset, root=args.root), "num_clients": args.clients,
            "images_per_client": args.images_per_client, "local_steps": args.local_steps,
            "rounds": args.rounds or (1 if args.quick else 5), "attack_options": {"num_bins": args.bins}}


def passive_training_fields(args) -> dict:
    return {"dataset": args.dataset, "root": args.root,
            **({} if args.widths is None else {"model_options": {"widths": args.widths}})}


CORE: tuple[Study, ...] = (
    Study("trap-weights", "002 Boenisch et al.", "Tables 2, 5, 6, 9; Figs. 9-10", "~7 min (343 CPU-s measured)",
          "Boenisch et al. Tables 2, 5, 6, 9 and Figs. 9-10 (passive attack, trap weights)",
          config="TrapReproductionConfig",
          data=("fashion_mnist", f"grey-scale dataset for the FC-NN, one of {IMAGES} (default fashion_mnist; mnist "
                                 "with --root DIR); Table 9 draws batches of 2000, Table 6 of 200"),
          quick="Tables 2 and 5 at the paper's 10 runs per cell, Tables 6 and 9 at 3 (~7 min)",
          out="results/trap-weights", ray=True,
          options={"runs": "runs per cell (the paper uses 10; default 10)",
                   "sweep_runs": "runs per cell of Tables 6 and 9 (default: --runs; quick 3)"},
          arguments={"colour_dataset": dict(default="skimage_photos", help=f"colour dataset for the CNN, one of "
                                            f"{IMAGES} (default skimage_photos; cifar10 or imagefolder with "
                                            "--colour-root DIR)"),
                     "colour_root": dict(default=None, help="folder of --colour-dataset"),
                     "tables": dict(nargs="+", default=["2", "5", "6", "9"], choices=["2", "5", "6", "9"],
                                    help="which tables to run (default all)")}),
    Study("text", "002 Boenisch et al.", "Table 3 (text, IMDB model; fortunes when IMDB is absent)",
          "~3 min (2.6 CPU-min measured)",
          "Boenisch et al. Table 3: passive and trap-weights text extraction on the IMDB model of Table 8 "
          "(B = 20, 50, 100, 200)",
          module="trap_text", config="TrapTextConfig", files="table.txt, table.csv, comparison.md",
          data=("fortunes", "text dataset (default fortunes: Debian's fortunes corpus, /usr/share/games/fortunes; "
                            "imdb with --root DIR, the unpacked aclImdb folder)"),
          quick="3 runs per cell", options={"runs": "runs per cell (default 10, quick 3)",
                                            "scale_factor": (positive_float, "trap weights s of the active attack "
                                                                             "(default 0.99)")}),
    trap_study("dp", "002 Boenisch et al.", "§9, Fig. 4 (clipping, local DP)", "~4 min",
               "Boenisch et al. §9 / Fig. 4: trap weights under clipping alone, then local DP noise (exact and "
               "near-exact recall vs sigma)", module="trap_dp", config="TrapDPConfig",
               files="table.txt, table.csv, comparison.md, recall_vs_sigma.png, extractions.png", data=GREY,
               model="default: the FC-NN of Table 7, quick: fcnn:widths=1000+64",
               quick="3 runs per cell on a narrow FC-NN (minutes on 2 cores)", runs="runs per cell (default 10, quick 3)"),
    trap_study("pruning", "002 Boenisch et al.", "§9.3 (gradient pruning)", "~2 min",
               "Boenisch et al. §9.3: trap weights under gradient pruning (exact and near-exact recall vs p)",
               module="trap_pruning", config="TrapPruningConfig",
               files="table.txt, table.csv, comparison.md, recall_vs_p.png, extractions.png", data=GREY,
               model="default: the FC-NN of Table 7", quick="3 runs per rate",
               runs="runs per rate (default 10, quick 3)"),
    trap_study("fedavg", "002 Boenisch et al.", "§8.4 (FedAvg updates)", "~1 min",
               "Boenisch et al. §8.4: trap weights against FedAvg updates (exact and near-exact recall vs the "
               "clients' learning rate and local steps)", module="trap_fedavg", config="TrapFedAvgConfig",
               files="table.txt, table.csv, comparison.md, recall_vs_lr.png",
               data=("bundled", "dataset (default bundled; mnist with --root DIR)"),
               model="default: the FC-NN of Table 7; quick fcnn:widths=1000+64", quick="one run on a narrow FC-NN",
               runs="runs per cell (default 3, quick 1)", options={"clients": "attacked clients per run (default 10)"}),
    Study("passive-training", "002 Boenisch et al.", "Table 4 (passive extraction during training)", "~1 min",
          "Boenisch et al. Table 4: passive extraction as the FC-NN trains (epochs 0-30)",
          config="PassiveTrainingConfig", files="table.txt, table.csv, comparison.md", data=FASHION,
          quick="a 1000+64 FC-NN, 3 runs", ray=True, options={"runs": "trainings (default 10, quick 3)"},
          arguments={"widths": dict(type=positive_ints, default=None,
                                    help="FC-NN widths, e.g. 1000+64 (default Table 7's 1000+3000+3000+2000+1000)")},
          fields=passive_training_fields),
    Study("vs-inversion", "002 Boenisch et al.", "§8.5 (trap weights vs IG, B = 1)", "~3 min",
          "Boenisch et al. §8.5: trap-weights extraction vs gradient inversion (IG), B = 1",
          config="VsInversionConfig", files="table.txt, table.csv, comparison.md, reconstructions.png", data=FASHION,
          quick="8 images, IG 1,000 iterations, a 1000+64 FC-NN",
          options={"images": "images (default 16, quick 8)",
                   "iterations": "IG iterations (default: the full schedule; quick 1000)",
                   "scale_factor": (positive_float, "trap weights s (default 0.9)")}),
    defense_table("defenses-dp", "dp", "Table 1 (DP: IG, WIIG, DPIA)", "~5 min",
                  "Scheliga et al. Table 1: IG, WIIG, DPIA against DP-SGD (sigma 1e-4, 1e-3)"),
    defense_table("defenses-pruning", "pruning", "Table 2 (pruning: IG, GPIA)", "~4 min",
                  "Scheliga et al. Table 2: IG and GPIA against gradient pruning (p 0.9, 0.95, 0.99)"),
    defense_table("defenses-modules", "modules", "Table 3 (PRECODE, CVB: PIG, WIIG, VBIA)", "~6 min",
                  "Scheliga et al. Table 3: PIG, WIIG, VBIA against PRECODE and CVB"),
    Study("ablation", "001 Scheliga et al.", "Table 4 (24 defense combinations; = fedleak ablation)",
          "~30 min (its --help)", "Scheliga et al. Table 4: every combination of Dropout, DP, pruning and a privacy "
          "module (the same as `fedleak ablation`; Table 5 with --model resnet18:norm=group or vit_small)",
          same_as="ablation"),
    Study("architectures", "001 Scheliga et al.", "Table 5 (ResNet-18 with group norm, ViT)",
          "~17 min (16.5 CPU-min measured)",
          "Scheliga et al. Table 5: the ablation's promising rows on a ResNet-18 with group norm and a ViT (CDIA "
          "SSIM/ASR, FedAvg accuracy)", config="ArchitecturesConfig",
          files="table.txt, table.csv, comparison.md; per model: cells, reconstructions.png", data=ANY_IMAGES,
          quick="narrow models (ResNet-18 width 16, ViT width 64), 4 victims, 200 attack iterations, 2 FedAvg "
                "rounds",
          options={"size": (parse_size, "resize images (default 32x32)"),
                   "victims": "victim images (default 128, quick 4)",
                   "attack_iterations": "short attack of this many iterations (default: the full schedule; quick 200)",
                   "rounds": "FedAvg rounds (default 300, quick 2)"}),
    Study("detection", "000 Wang & Li", "Table 1, Figs. 2-3 (= fedleak detect-eval)", "~9 min",
          "Wang & Li Table 1, Figs. 2-3: the client-side detectors against the malicious-server attacks (the same "
          "as `fedleak detect-eval`)", same_as="detect_eval"),
    Study("loki", "000 Wang & Li, ref. [49] Zhao et al.",
          "LOKI leak rate (10 clients x 64, FedAvg, SecAgg); --flower-secagg: through Flower's SecAgg+",
          "~1 min; --flower-secagg ~11 min (130 CPU-s)",
          "LOKI (Zhao et al.) leak rate per FedAvg round through secure aggregation",
          config="LokiReproductionConfig", text="report", data=BUNDLED_IMAGES,
          quick="one round (default: 5 rounds, each attacked)", out="results/loki", quick_method=None,
          fields=loki_fields,
          arguments={"rounds": dict(type=positive_int, default=None, help="rounds, each attacked (overrides --quick)"),
                     "clients": count(10, "clients"), "images_per_client": count(64, "images per client"),
                     "local_steps": count(4, "local SGD steps per round"), "bins": count(512, "imprint bins")},
          variants={"flower_secagg": ("reproduce_loki_secagg", "report_secagg", "",
                                      "through Flower's real SecAgg+ (simulation engine): one round per aggregation "
                                      "(plain float mean, SecAgg+ defaults, a sweep of clipping and quantisation "
                                      "ranges, the attacker's adapted kernels), same clients and seed")}),
    Study("seer", "000 Wang & Li, ref. [14] Garov et al.", "SEER SSIM: BN vs GN vs LN, FedAvg (§4.1)",
          "~10 s (shipped checkpoints; training ~30 min)",
          "SEER (Garov et al.) decoded brightest image: batch vs group vs layer norm, and FedAvg",
          config="SeerReproductionConfig", files="results.json, table.txt, table.csv, decoded.png", data=AT_32,
          quick="load the checkpoints shipped with fedleak (no training), 30 held-out batches", out="results/seer",
          profiles={"paper": ("paper", "the paper's scale: full-width ResNet-18, batch 64, long training (use "
                                       "--device cuda)")}, default_profile="with_training",
          options={"steps": "training steps per norm (default 4000)", "batch_size": "client batch size (default 16)"}),
    Study("hear-no-evil-s4", "000 Wang & Li", "§4: SEER vs BN/GN/LN and batch size, FedSGD/FedAvg, detectors",
          "~4-5 min", "Wang & Li §4: SEER vs norm and batch size, after FedSGD rounds and FedAvg epochs; the "
          "detectors on SEER, LOKI and model inconsistency", config="S4Config", run="reproduce_s4",
          files="table.txt, norms.csv, rounds.csv, detection.csv, leakage.png, results.json", data=AT_32,
          quick="batch sizes 4 and 16 (shipped SEER checkpoints), FedAvg up to 3 epochs",
          out="results/hear-no-evil-s4"),
)
EXPERIMENTS: tuple[Study, ...] = CORE + BEYOND


def list_experiments() -> str:
    """The ``--list`` table."""
    rows = [("sub-command", "paper", "reproduces", "--quick on 2 CPU cores")]
    rows += [(e.name, e.paper, e.reproduces, e.quick_time) for e in EXPERIMENTS]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def register(subparsers) -> None:
    parser = subparsers.add_parser("reproduce", help="reproduce a paper's tables and figures (--list: which)")
    parser.add_argument("--list", action="store_true", help="list the experiments with their paper and quick time")
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for experiment in EXPERIMENTS:
        add(experiment, experiments)

    def listing(args) -> int:
        if not args.list:
            parser.error("choose an EXPERIMENT, or --list to see them")
        print(list_experiments())
        return 0

    parser.set_defaults(func=listing)
