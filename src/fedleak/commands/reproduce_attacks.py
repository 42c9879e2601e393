"""The ``fedleak reproduce`` rows of the attacks beyond the three core papers: model inconsistency through Flower's
SecAgg+, the 2021-2024 attacks (batch-norm prior, FedAvg inversion, SPEAR, QBI) and DAGER on language models
(:class:`~fedleak.commands.studies.Study` rows, built by the one builder of :mod:`fedleak.commands.reproduce`)."""
from __future__ import annotations

from fedleak.commands.common import positive_ints
from fedleak.commands.studies import BUNDLED_IMAGES, Study, count
from fedleak.fl import FederationSpec


def inconsistency_fields(args) -> dict:
    return {"federation": FederationSpec(dataset=args.dataset, root=args.root, model="fcnn",
                                         model_options={"widths": (1000, 64)}), "num_clients": args.clients}


BUNDLED_MNIST = ("bundled", "image dataset (default bundled; mnist with --root DIR)")

BEYOND: tuple[Study, ...] = (
    Study("secagg-inconsistency", "000 Wang & Li, ref. [31] Pasquini et al.",
          "model inconsistency + trap weights through Flower's SecAgg+", "~5 min",
          "model inconsistency + trap weights through Flower's real SecAgg+: the target's exact and near-exact "
          "recall under the plain mean, SecAgg+ settings and the attacker's amplification",
          module="inconsistency_secagg", config="InconsistencySecAggConfig", text="report", files="results.json",
          data=BUNDLED_IMAGES, quick="the same run (one round per aggregation; minutes on 2 cores)",
          out="results/secagg-inconsistency", quick_method=None, fields=inconsistency_fields,
          arguments={"clients": count(10, "clients")}),
    Study("bn-prior", "Yin et al. 2021 (issue 24)", "BN prior vs none, BN CNN (full: ResNet-18), B = 8 (SSIM)",
          "~3 min (186 s measured, loaded)",
          "Yin et al. 2021 (GradInversion): the batch-norm statistics prior vs none on a batch-norm ResNet-18 "
          "(quick: a batch-norm CNN), B = 8, SSIM; one-step FedAvg update, prior modes none / inferred (the "
          "update's BN buffers) / running / proxy (the server's public images)",
          config="BNPriorConfig", files="results.json, comparison.md",
          data=("bundled", "image dataset, read at 32x32 (quick 16x16; default bundled)"),
          quick="the batch-norm CNN at 16x16, 200 IG iterations", out="results/bn-prior",
          options={"batch_size": "the client's batch size B (default 8)",
                   "iterations": "IG iterations (default 1000, quick 200)",
                   "width": "ResNet-18 first-stage width (default 8)",
                   "network": (str, "batch-norm network: resnet18 or cnn (default resnet18, quick cnn)"),
                   "size": "image side (default 32, quick 16)"}),
    Study("fedavg-inversion", "Dimitrov et al. 2022 (issue 24)",
          "images >= 20 dB from FedAvg updates: FedAvg inversion vs IG", "~3 min (196 s measured, loaded)",
          "Dimitrov et al. 2022: share of images >= 20 dB from multi-step FedAvg updates, FedAvg inversion vs IG on "
          "the same updates", config="FedAvgInversionConfig", files="results.json, comparison.md",
          data=("bundled", "image dataset, read at 28x28 (quick 16x16; default bundled)"),
          quick="2 clients x 4 images at 16x16, one epoch of 2 steps, 200 iterations", out="results/fedavg-inversion",
          options={"clients": "clients attacked (default 4, quick 2)", "epochs": "local epochs (default 2, quick 1)",
                   "iterations": "attack iterations (default 1000, quick 200)",
                   "size": "image side (default 28, quick 16)"}),
    Study("dager", "Petrov et al. 2024 (DAGER; issue 25)", "exact text recovery from LM gradients, full and LoRA",
          "~3 min (3m07s measured, loaded)",
          "DAGER (Petrov et al. 2024): exact text from a GPT-2-style decoder's and a BERT-style encoder's gradient, "
          "full and LoRA fine-tuning, B = 1, 8, 32 (needs fedleak[llm])",
          config="DagerReproductionConfig", files="results.json, table.txt, comparison.md, cells.jsonl",
          data=("fortunes", "text (fortunes: Debian's fortunes corpus, tokenised by a BPE trained here)"),
          quick="one run per cell, encoder B = 1 and 8 only (~3 min on 2 loaded cores)",
          options={"runs": "runs per cell (default 3, quick 1)"}),
    Study("spear", "Dimitrov et al. (NeurIPS 2024)", "SPEAR exact batch recovery rate per B (FedSGD, FedAvg)",
          "~6 min on a loaded machine",
          "Dimitrov et al. (SPEAR, NeurIPS 2024): share of client batches recovered whole and exactly per batch "
          "size, from FedSGD gradients and a FedAvg update of an FC-ReLU layer",
          config="SpearReproductionConfig", files="results.json, table.txt, comparison.md", data=BUNDLED_MNIST,
          quick="B = 1, 2, 4, 8, 16, 20, 3 batches each, 1,000,000 proposals per update",
          options={"batch_sizes": (positive_ints, "batch sizes, e.g. 1+4+8+16 (default 1+4+8+12+16+20+24)"),
                   "batches": "client batches per batch size (default 10, quick 3)",
                   "proposals": "SPEAR's budget of proposals per update (default 2,000,000)"}),
    Study("qbi", "Nowak et al. (2024)", "QBI and PAIRS vs trap weights / Robbing the Fed (recall at the same N, B)",
          "~5 min on a loaded machine",
          "Nowak et al. (QBI, 2024): exact and near-exact recall of quantile-based biases vs trap weights and "
          "Robbing the Fed at the same neurons N and batch size B",
          config="QbiReproductionConfig", files="results.json, table.txt, comparison.md", data=BUNDLED_MNIST,
          quick="N = 200, 1000 x B = 20, 50, 100, 3 runs", options={"runs": "runs per cell (default 10, quick 3)"}),
)
