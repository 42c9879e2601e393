"""``fedleak reproduce`` sub-commands of the attacks beyond the three core papers: through Flower's SecAgg+
(model inconsistency), the 2021-2024 attacks (batch-norm prior, FedAvg inversion, SPEAR, QBI) and DAGER on language
models; their rows of ``--list`` are in :data:`fedleak.commands.reproduce.EXPERIMENTS`."""
from __future__ import annotations

from fedleak.commands.common import positive_int
from fedleak.commands.studies import add_study, finished, runner


def run_inconsistency_secagg(args) -> int:
    from fedleak.experiments.inconsistency_secagg import (InconsistencySecAggConfig, report,
                                                          reproduce_inconsistency_secagg)
    from fedleak.fl import FederationSpec

    federation = FederationSpec(dataset=args.dataset, root=args.root, model="fcnn",
                                model_options={"widths": (1000, 64)})
    config = InconsistencySecAggConfig(federation=federation, num_clients=args.clients, seed=args.seed,
                                       device=args.device)
    return finished(report(reproduce_inconsistency_secagg(config, args.out)), args.out, "results.json")


def add_inconsistency_secagg(experiments) -> None:
    parser = add_study(experiments, "secagg-inconsistency",
                       "model inconsistency + trap weights through Flower's real SecAgg+: the target's exact and "
                       "near-exact recall under the plain mean, SecAgg+ settings and the attacker's amplification",
                       data=("bundled", "image dataset (default bundled)"),
                       quick="the same run (one round per aggregation; minutes on 2 cores)",
                       out="results/secagg-inconsistency", func=run_inconsistency_secagg)
    parser.add_argument("--clients", type=positive_int, default=10, help="clients (default 10)")


def add_bn_prior(experiments) -> None:
    add_study(experiments, "bn-prior",
              "Yin et al. 2021 (GradInversion): the batch-norm statistics prior vs none on a batch-norm ResNet-18 "
              "(quick: a batch-norm CNN), B = 8, SSIM; one-step FedAvg update, prior modes none / inferred (the "
              "update's BN buffers) / running / proxy (the server's public images)",
              data=("bundled", "image dataset, read at 32x32 (quick 16x16; default bundled)"),
              quick="the batch-norm CNN at 16x16, 200 IG iterations", out="results/bn-prior",
              func=runner("bn_prior", "BNPriorConfig", "reproduce_bn_prior", "results.json, comparison.md"),
              batch_size=(positive_int, "the client's batch size B (default 8)"),
              iterations=(positive_int, "IG iterations (default 1000, quick 200)"),
              width=(positive_int, "ResNet-18 first-stage width (default 8)"),
              network=(str, "batch-norm network: resnet18 or cnn (default resnet18, quick cnn)"),
              size=(positive_int, "image side (default 32, quick 16)"))


def add_fedavg_inversion(experiments) -> None:
    add_study(experiments, "fedavg-inversion",
              "Dimitrov et al. 2022: share of images >= 20 dB from multi-step FedAvg updates, FedAvg inversion vs "
              "IG on the same updates",
              data=("bundled", "image dataset, read at 28x28 (quick 16x16; default bundled)"),
              quick="2 clients x 4 images at 16x16, one epoch of 2 steps, 200 iterations",
              out="results/fedavg-inversion",
              func=runner("fedavg_inversion", "FedAvgInversionConfig", "reproduce_fedavg_inversion",
                          "results.json, comparison.md"),
              clients=(positive_int, "clients attacked (default 4, quick 2)"),
              epochs=(positive_int, "local epochs (default 2, quick 1)"),
              iterations=(positive_int, "attack iterations (default 1000, quick 200)"),
              size=(positive_int, "image side (default 28, quick 16)"))
def add_dager(experiments) -> None:
    add_study(experiments, "dager",
              "DAGER (Petrov et al. 2024): exact text from a GPT-2-style decoder's and a BERT-style encoder's "
              "gradient, full and LoRA fine-tuning, B = 1, 8, 32 (needs fedleak[llm])",
              data=("fortunes", "text (fortunes: Debian's fortunes corpus, tokenised by a BPE trained here)"),
              quick="one run per cell, encoder B = 1 and 8 only (~3 min on 2 loaded cores)", out="results/reproduce-dager",
              func=runner("dager", "DagerReproductionConfig", "reproduce_dager",
                          "results.json, table.txt, comparison.md, cells.jsonl"),
              runs=(positive_int, "runs per cell (default 3, quick 1)"))
def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1+4+8"`` -> (1, 4, 8), each positive."""
    return tuple(positive_int(t) for t in text.split("+"))


def add_spear(experiments) -> None:
    add_study(experiments, "spear",
              "Dimitrov et al. (SPEAR, NeurIPS 2024): share of client batches recovered whole and exactly per batch "
              "size, from FedSGD gradients and a FedAvg update of an FC-ReLU layer",
              data=("bundled", "image dataset (default bundled; mnist with --root DIR)"),
              quick="B = 1, 4, 8, 16, 24, 3 batches each, 500,000 proposals per update",
              out="results/reproduce-spear",
              func=runner("spear", "SpearReproductionConfig", "reproduce_spear",
                          "results.json, table.txt, comparison.md"),
              batch_sizes=(parse_sizes, "batch sizes, e.g. 1+4+8+16 (default 1+4+8+12+16+20+24)"),
              batches=(positive_int, "client batches per batch size (default 10, quick 3)"),
              proposals=(positive_int, "SPEAR's budget of proposals per update (default 2,000,000)"))


def add_qbi(experiments) -> None:
    add_study(experiments, "qbi",
              "Nowak et al. (QBI, 2024): exact and near-exact recall of quantile-based biases vs trap weights and "
              "Robbing the Fed at the same neurons N and batch size B",
              data=("bundled", "image dataset (default bundled; mnist with --root DIR)"),
              quick="N = 200, 1000 x B = 20, 50, 100, 3 runs", out="results/reproduce-qbi",
              func=runner("qbi", "QbiReproductionConfig", "reproduce_qbi", "results.json, table.txt, comparison.md"),
              runs=(positive_int, "runs per cell (default 10, quick 3)"))
