"""``fedleak detect-eval``: false alarms, detection rates and overhead of the client-side detectors
(Wang & Li §3, §5), plus Table 1, Fig. 2 and Fig. 3 of the paper."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fedleak.commands.common import add_run_arguments, int_list, names, open_fraction, parse_size, positive_int
from fedleak.experiments.detection import DetectEvalConfig, run_detect_eval
from fedleak.experiments.detection_figures import FiguresConfig, run_figures
from fedleak.experiments.first_contact import FirstContactConfig, run_first_contact
from fedleak.experiments.open_world import OpenWorldConfig, run_open_world
from fedleak.experiments.tradeoff import TradeoffConfig, run_tradeoff
from fedleak.experiments.adaptive import AdaptiveConfig, run_adaptive
from fedleak.experiments.guard_cost import GuardCostConfig, run_guard_cost
from fedleak.study.detection_report import detection_comparison, table_header, table_rows
from fedleak.report.comparison import comparison_markdown

# --quick: every manipulation on a small victim it applies to, on a CPU. The CNN gives the benign false-alarm rate
# over 2 partitions x 10 rounds x 10 clients; the other victims run one partition for 6 rounds.
_VICTIM = {"rounds": 6, "attack_rounds": (1, 4, 6), "attack_clients": 2, "partitions": ("iid",)}
QUICK_MODELS = {
    "cnn": {"size": (32, 32), "rounds": 10, "attack_rounds": (1, 4, 9), "attack_clients": 2},
    "fcnn": {"size": None, "model_options": {"widths": (256, 128)}, **_VICTIM},
    "vgg_cnn": {"size": (16, 16), "model_options": {"channels": (8, 16), "hidden": 128}, **_VICTIM},
    "text_transformer": {"size": None, "model_options": {"vocab_size": 16, "width": 32, "heads": 2}, **_VICTIM},
}
QUICK_FIGURES = {"size": (16, 16), "width": 8, "rounds": 6}
# --first-contact: 16x16 images (tokens for the text models), the --quick victims, slim ResNet-18s (batch and group
# norm), a small ViT, the IMDB model, an embedding+linear language model and the 32x32 batch-norm CNN SEER's
# shipped checkpoint was trained for
FIRST_CONTACT_OPTIONS = {
    "cnn": {"padding": 2}, **{m: QUICK_MODELS[m]["model_options"] for m in ("fcnn", "vgg_cnn", "text_transformer")},
    "imdb_fc": {"vocab_size": 16, "embed_dim": 8, "hidden": 128},
    "resnet18-batch": {"norm": "batch", "width": 8}, "resnet18-group": {"norm": "group", "width": 8},
    "vit_small": {"depth": 2, "width": 64, "heads": 4},
    "embedding_lm": {"embed_dim": 16, "hidden": 32}, "cnn-bn": {"norm": "batch", "padding": 2},
}


def configs_from_args(args) -> list[DetectEvalConfig]:
    models = args.model or (tuple(QUICK_MODELS) if args.quick else ("cnn",))
    configs = []
    for model in models:
        options = dict(QUICK_MODELS.get(model, _VICTIM)) if args.quick else {}
        for name in ("size", "rounds", "attack_rounds", "attack_clients", "partitions"):
            if getattr(args, name) is not None:
                options[name] = getattr(args, name)
        configs.append(DetectEvalConfig(model=model, dataset=args.dataset, **options,
                                        num_clients=args.clients, samples=args.samples,
                                        remember_rounds=args.remember_rounds,
                                        false_alarm_rate=args.false_alarm_rate, seed=args.seed, device=args.device))
    return configs


def run_first_contact_eval(args) -> int:
    """``--first-contact``: the first-contact chain against every manipulation at round 1, and its false alarms."""
    options = {"models": args.model} if args.model else {}
    if args.rounds is not None:
        options["rounds"] = args.rounds
        options["attack_rounds"] = (1, args.rounds)
    config = FirstContactConfig(**options, model_options=FIRST_CONTACT_OPTIONS, num_clients=args.clients,
                                seed=args.seed, device=args.device)
    summary = run_first_contact(config, args.out)
    print((Path(args.out) / "first_contact.md").read_text())
    print(f"false alarms {summary['false_alarm_rate']:.4f} over {summary['benign_client_rounds']} benign "
          f"client-rounds; suite cost {summary['cost']['relative_to_local_epoch']:.3f} local epochs per check")
    print(f"results in {args.out}")
    return 0


def run_open_world_eval(args) -> int:
    """``--open-world``: false alarms of the first-contact chain on the benign zoo (``--model`` picks variants;
    with --quick 3 clients per variant, else --clients)."""
    config = OpenWorldConfig(variants=args.model, clients=3 if args.quick else args.clients, seed=args.seed,
                             device=args.device)
    summary = run_open_world(config, args.out)
    print(f"open world: {summary['benign_variants']} benign variants x {summary['clients']} clients; false alarms "
          f"{summary['false_alarm_rate']:.4f} (default chain {', '.join(summary['default_chain'])}), "
          f"{summary['false_alarm_rate_all_measured']:.4f} with every measured detector")
    for name, rate in summary["false_alarms_per_detector"].items():
        print(f"  {name:16s} {rate:.4f}{'  over the bound' if name in summary['over_bound'] else ''}")
    for variant, detectors in summary["flagged_variants"].items():
        print(f"  flagged {variant}: {', '.join(detectors)}")
    print(f"results in {Path(args.out) / 'open_world.json'}")
    return 0


def run_tradeoff_eval(args) -> int:
    """``--tradeoff``: leakage against the first-contact chain's score as the attacker camouflages each
    manipulation."""
    out = Path(args.out) / "tradeoff"
    summary = run_tradeoff(TradeoffConfig(model_options=FIRST_CONTACT_OPTIONS, seed=args.seed), out)
    for attack, row in summary.items():
        accepted = row["smallest_epsilon_accepted"]
        left = row["leakage_when_first_accepted"]
        print(f"{attack:20s} {row['model']:16s} refused up to epsilon "
              f"{'every value' if accepted is None else f'< {accepted:g}'}; leakage when first accepted: {left}; "
              f"benign readout: {row['benign_readout']}")
    seer = summary["seer"]
    print(f"{'seer':20s} weight share a: largest accepted {seer['knobs']['largest_a_accepted']}, leakage there "
          f"{seer['knobs']['leakage_when_last_accepted']}; no-gradient prior {seer['prior']}")
    print(f"results in {out}")
    return 0


def run_adaptive_eval(args) -> int:
    """``--adaptive``: the largest leakage of any camouflaged manipulation the first-contact chain accepts, with
    and without the leakage guard, beside the honest model's own: OUT/adaptive.json."""
    config = AdaptiveConfig(batches=1 if args.quick else 3, seed=args.seed, device=args.device)
    rows = run_adaptive(config, args.out)
    for attack, row in rows.items():
        def show(value):
            return "-" if value is None else f"{value:.3f}"
        print(f"{attack:18s} {row['model']:16s} accepted {row['accepted']:2d}/{len(row['camouflages'])}; guarded "
              f"max recall {show(row['max_accepted_exact_recall'])} near {show(row['max_accepted_near_share'])} "
              f"ssim {show(row['max_accepted_ssim'])} | unguarded recall "
              f"{show(row['without_guard']['max_accepted_exact_recall'])} near "
              f"{show(row['without_guard']['max_accepted_near_share'])} | honest recall "
              f"{show(row['honest_exact_recall'])} near {show(row['honest_near_share'])} ssim "
              f"{show(row['honest_ssim'])}; holds {row['holds']}")
    print(f"results in {Path(args.out) / 'adaptive.json'}")
    return 0


def run_guard_cost_eval(args) -> int:
    """``--guard-cost``: FedAvg and FedSGD accuracy with the leakage guard on and off for every registry model, and
    its seconds against local training: OUT/guard_cost.json."""
    options = {"models": args.model} if args.model else {}
    rows = run_guard_cost(GuardCostConfig(**options, seed=args.seed, device=args.device), Path(args.out) / "guard-cost")
    for model, protocols in rows.items():
        for protocol, row in protocols.items():
            print(f"{model:16s} {protocol:6s} accuracy {row['accuracy_off']:.3f} -> {row['accuracy_on']:.3f} with the "
                  f"guard; {row['zeroed_rows_per_update']:.1f} rows zeroed per update; guard "
                  f"{row['guard_seconds']:.2f}s = {row['guard_over_fit']:.2f}x local training")
    print(f"results in {Path(args.out) / 'guard-cost' / 'guard_cost.json'}")
    return 0


@dataclass(frozen=True)
class Mode:
    """A mode of ``detect-eval`` other than the paper-mode grid: its ``flag``, what it runs and its ``help``."""

    flag: str
    run: Callable[[argparse.Namespace], int]
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


# the modes, in the order they run when several are asked for (each runs here only, not on a Ray cluster)
MODES = (
    Mode("--open-world", run_open_world_eval,
         "false alarms of the first-contact chain on the benign zoo (fedleak.benchmarks.benign_zoo; --model picks "
         "variants; 3 clients each with --quick): OUT/open_world.json"),
    Mode("--guard-cost", run_guard_cost_eval,
         "FedAvg and FedSGD accuracy with the leakage guard on and off for every registry model (--model picks some) "
         "and its seconds per round: OUT/guard-cost/guard_cost.json"),
    Mode("--first-contact", run_first_contact_eval,
         "evaluate the first-contact chain (no remembered rounds) beside the paper's detectors on the small models "
         "of FIRST_CONTACT_OPTIONS (--model picks some, e.g. resnet18-group; --rounds, --clients, --seed apply): "
         "OUT/first_contact.json"),
    Mode("--tradeoff", run_tradeoff_eval,
         "the adaptive attacker's leakage against the first-contact chain as it camouflages each manipulation: "
         "OUT/tradeoff/tradeoff.json and one PNG per manipulation"),
    Mode("--adaptive", run_adaptive_eval,
         "an attacker who knows the first-contact chain camouflages every manipulation; the largest leakage of an "
         "accepted model with and without the leakage guard, beside the honest model's own: OUT/adaptive.json "
         "(--quick: one batch of 64, else three)"),
)


def run(args) -> int:
    chosen = [mode for mode in MODES if getattr(args, mode.dest)]
    if chosen:
        if args.ray:
            raise ValueError("--ray runs the paper-mode grid's partitions; "
                             f"{', '.join(m.flag for m in MODES)} run here only (leave out --ray)")
        for mode in chosen:
            mode.run(args)
        return 0
    out = Path(args.out)
    summaries = []
    for config in configs_from_args(args):
        summaries.append(run_detect_eval(config, out / config.model, ray=args.ray))
    lines = table_header() + [row for s in summaries for row in table_rows(s)]
    text = ("Detection rate per attack and detector at the fixed threshold (in brackets: threshold calibrated for "
            f"{args.false_alarm_rate:.0%} false alarms on even clients, reported on odd clients)\n\n"
            + "\n".join(lines) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
    print(text)
    figures = None
    if args.figures:
        config = FiguresConfig(**(QUICK_FIGURES if args.quick else {}), seed=args.seed, device=args.device)
        figures = run_figures(config, out / "figures")
    (out / "comparison.md").write_text(comparison_markdown(
        "Paper 000 (Wang & Li): ours beside the paper", detection_comparison(summaries, figures)))
    print(f"results in {out} (table.md, summary.json, comparison.md)")
    return 0


def add_arguments(parser) -> None:
    """The options of ``fedleak detect-eval`` (also ``fedleak reproduce detection``)."""
    parser.add_argument("--model", type=names, default=None,
                        help="model(s), comma-separated (default cnn; with --quick: cnn,fcnn,vgg_cnn,text_transformer)")
    parser.add_argument("--dataset", default="bundled", help="dataset (default bundled; images become tokens for "
                        "text_transformer)")
    parser.add_argument("--size", type=parse_size, default=None, help="resize images, e.g. 32")
    parser.add_argument("--clients", type=positive_int, default=10, help="clients (default 10)")
    parser.add_argument("--rounds", type=positive_int, default=None, help="FedAvg rounds per partition (default 20)")
    parser.add_argument("--attack-rounds", type=int_list, default=None,
                        help="rounds whose model the server manipulates, e.g. 2,15")
    parser.add_argument("--attack-clients", type=positive_int, default=None,
                        help="clients checking each manipulated model")
    parser.add_argument("--partitions", type=names, default=None, help="iid,dirichlet (default both)")
    parser.add_argument("--samples", type=positive_int, default=128,
                        help="local samples the detectors use (default 128)")
    parser.add_argument("--remember-rounds", type=positive_int, default=5,
                        help="rounds the warm-up detector remembers (its +rounds column; default 5)")
    parser.add_argument("--false-alarm-rate", type=open_fraction, default=0.05,
                        help="calibration target (default 0.05)")
    parser.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                        help="also Table 1, Fig. 2 and Fig. 3 with a ResNet-18 (default on)")
    parser.add_argument("--quick", action="store_true", help="small models and runs for a CPU")
    for mode in MODES:
        parser.add_argument(mode.flag, action="store_true", help=mode.help)
    add_run_arguments(parser, out="results/detect-eval", ray=True)
    parser.set_defaults(func=run)


def register(subparsers) -> None:
    add_arguments(subparsers.add_parser("detect-eval", help="evaluate the client-side malicious-model detectors"))
