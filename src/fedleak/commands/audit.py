"""``fedleak audit``: how much your model's updates leak, what stops it at what cost, and (against a malicious
server) whether the client's detectors catch the traps, on your own model and data; one HTML report."""
from __future__ import annotations

import argparse

from fedleak.commands.common import (add_profile_options, add_run_arguments, non_negative_int, parse_size,
                                     positive_int, profile_overrides)
from fedleak.audit import DEFAULT_DEFENSES, AuditConfig, run_audit


def size_or_none(text: str):
    return None if text.lower() == "none" else parse_size(text)


def config_from_args(args) -> AuditConfig:
    fields = {"model": args.model, "data": args.data, "weights": args.weights, "root": args.root, "size": args.size,
              "threat": args.threat, "protocol": args.protocol, "batch_size": args.batch_size,
              "secure_aggregation": args.secure_aggregation,
              "defenses": tuple(args.defense) if args.defense else DEFAULT_DEFENSES,
              "attacks": tuple(a.strip() for a in args.attacks.split(",") if a.strip()) if args.attacks else None,
              "seed": args.seed, "device": args.device, **profile_overrides(args)}
    return AuditConfig.quick_profile(**fields) if args.quick else AuditConfig(**fields)


def run(args) -> int:
    report = run_audit(config_from_args(args), args.out)
    verdict = report["verdict"]
    print()
    for label, key in (("leak", "leak"), ("defense", "defense"), ("manipulations", "manipulations")):
        print(f"{label:>13}: {verdict[key]['text']}")
    for warning in verdict["warnings"]:
        print(f"      warning: {warning}")
    print(f"\nreport: {args.out}/report.html (figures in report.json; {report['seconds']:.0f} s)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit", help="audit your own model and data: leakage, defenses and their cost, detectors; an HTML report",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a registry model with options (cnn, resnet18:norm=group) or your own nn.Module factory "
                             "or class: package.module:factory or path/to/file.py:factory (called with input_shape "
                             "and num_classes where it takes them; :key=value options after it)")
    parser.add_argument("--data", required=True,
                        help="a registry dataset (bundled, cifar10), a folder of images (one sub-folder per class), "
                             "or a torch Dataset (or a function returning one) as package.module:name")
    parser.add_argument("--weights", default=None, help="a safetensors state dict for the model (checked key by key)")
    parser.add_argument("--root", default=None, help="data folder for registry datasets that need one")
    parser.add_argument("--size", type=size_or_none, default=(32, 32),
                        help="resize registry and folder images (default 32x32; 'none' keeps their size)")
    parser.add_argument("--threat", choices=("honest", "malicious"), default="honest",
                        help="honest-but-curious server, or a malicious one that may send manipulated models "
                             "(then the detectors are asked too)")
    parser.add_argument("--protocol", default="fedsgd", help="fedsgd (default) or fedavg[:steps=5][:lr=0.01]")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="each victim's batch size (default 1)")
    parser.add_argument("--secure-aggregation", type=non_negative_int, default=0, metavar="N",
                        help="N clients per round (instead of --victims), whose updates the server sees only as "
                             "their mean (default 0: off)")
    parser.add_argument("--defense", action="append", default=None,
                        help="a defense combination, e.g. dp:sigma=1e-3,cvb; repeat for several; 'none' for none "
                             f"(default: {' and '.join(DEFAULT_DEFENSES)})")
    parser.add_argument("--attacks", default=None,
                        help="comma-separated attacks (default: every one that applies; `fedleak list attacks`)")
    add_profile_options(
        parser, quick="4 victims, 200 inversion iterations (the strongest preset behind each defense), 3 FedAvg "
                      "rounds of 5 clients on 2000 samples per defense: minutes on 2 CPU cores",
        victims=(positive_int, "victim clients (default 8, quick 4)"),
        iterations=(positive_int, "inversion iterations (default: each preset's full schedule; quick 200)"),
        utility_rounds=(positive_int, "FedAvg rounds pricing each defense (default 10, quick 3)"),
        utility_clients=(positive_int, "clients of that run (default 10, quick 5)"),
        utility_samples=(positive_int, "training samples of that run, a seeded draw (default all, quick 2000)"))
    add_run_arguments(parser, out="results/audit")
    parser.set_defaults(func=run)
