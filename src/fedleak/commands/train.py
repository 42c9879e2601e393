"""``fedleak train``: one federated-learning run, accuracy per round printed and saved."""
from __future__ import annotations

import argparse

from fedleak.commands.common import add_run_arguments, fraction, parse_size, positive_float, positive_int
from fedleak.study.fl_run import run_fl
from fedleak.fl import FederationSpec, FLConfig


def add_federation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="bundled", help="dataset name (default bundled)")
    parser.add_argument("--root", default=None, help="data folder for datasets that need one")
    parser.add_argument("--size", type=parse_size, default=(32, 32),
                        help="resize images, e.g. 32 or 32x32 (default 32x32: the cnn needs at least 29x29 inputs)")
    parser.add_argument("--model", default="cnn", help="model name (default cnn)")
    parser.add_argument("--clients", type=positive_int, default=10, help="number of clients (default 10)")
    parser.add_argument("--rounds", type=positive_int, default=10, help="number of rounds (default 10)")
    parser.add_argument("--fraction", type=fraction, default=1.0, help="share of clients per round (default 1)")
    parser.add_argument("--algorithm", default="fedavg", choices=["fedavg", "fedsgd"])
    parser.add_argument("--local-epochs", type=positive_int, default=1)
    parser.add_argument("--local-steps", type=positive_int, default=None, help="local steps instead of epochs")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--partition", default="iid", choices=["iid", "dirichlet"])
    parser.add_argument("--alpha", type=positive_float, default=0.5,
                        help="Dirichlet concentration for non-IID splits")
    parser.add_argument("--patience", type=positive_int, default=None, help="early-stopping patience in rounds")


def federation_from_args(args) -> tuple[FederationSpec, FLConfig]:
    spec = FederationSpec(dataset=args.dataset, model=args.model, root=args.root, size=args.size,
                          partition=args.partition, alpha=args.alpha)
    config = FLConfig(algorithm=args.algorithm, num_clients=args.clients, rounds=args.rounds, fraction=args.fraction,
                      local_epochs=args.local_epochs, local_steps=args.local_steps, batch_size=args.batch_size,
                      optimizer=args.optimizer, lr=args.lr, patience=args.patience, seed=args.seed,
                      device=args.device)
    return spec, config


def run(args) -> int:
    spec, config = federation_from_args(args)
    history = run_fl(spec, config, args.out)
    for r in history.rounds:
        print(f"round {r.round:3d}  test accuracy {r.test_accuracy:.4f}  test loss {r.test_loss:.4f}")
    print(f"results in {args.out}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="run federated learning and save accuracy per round")
    add_federation_arguments(parser)
    add_run_arguments(parser, out="results/train")
    parser.set_defaults(func=run)
