"""Dimitrov et al. 2022 ("Data Leakage in Federated Averaging", TMLR), issue 24: the share of a client's images
recovered (PSNR >= 20 dB) from multi-step FedAvg updates, FedAvg inversion vs IG on the same updates (IG reads an
update as one gradient of all its samples, :func:`fedleak.attacks.inversion.attack.delta_as_gradient`).

The case layer runs it: one federation round of ``clients`` clients, each holding ``samples`` images and taking
``samples / batch_size`` plain-SGD steps (one epoch) or ``epochs`` epochs, under ``ThreatModel(protocol="fedavg")``;
the server's :class:`fedleak.cases.Audit` runs ``fedavg_inversion`` and scores it; IG then inverts the very updates
that audit observed. A point counts as recovered when its best candidate reaches 20 dB (the paper's threshold).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Knowledge, LocalTraining
from fedleak.cases import Audit, ThreatModel
from fedleak.cases.scoring import score
from fedleak.data import load_dataset
from fedleak.study.paper_tables import DIMITROV2022_FEMNIST_RECOVERED
from fedleak.study.config import RunConfig
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.extraction import near_key
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown

THRESHOLD = 20.0  # dB


@dataclass
class FedAvgInversionConfig(RunConfig):
    """``clients`` clients of ``samples`` images each, local SGD with ``lr`` on batches of ``batch_size`` for
    ``epochs`` epochs on Scheliga et al.'s CNN; both attacks run ``iterations``; ``orders`` epoch orders averaged."""

    dataset: str = "bundled"
    root: str | None = None
    clients: int = 4
    samples: int = 4
    batch_size: int = 2
    epochs: int = 2
    lr: float = 0.1
    iterations: int = 1000
    orders: int = 2

    @classmethod
    def quick(cls, **overrides) -> "FedAvgInversionConfig":
        """2 clients, one epoch of 2 steps, 200 iterations: minutes on 2 CPU cores."""
        return cls(**{"clients": 2, "epochs": 1, "iterations": 200, "orders": 1, **overrides})


def reproduce_fedavg_inversion(config: FedAvgInversionConfig, out: str | Path) -> dict:
    """Run the round, both attacks on its updates; write ``results.json`` and ``comparison.md``."""
    results = ResultsDir(out, asdict(config))
    data = load_dataset(config.dataset, root=config.root, size=(32, 32))
    generator = torch.Generator().manual_seed(config.seed)
    chosen = torch.randperm(len(data), generator=generator)[:config.clients * config.samples]
    fl = FLConfig(algorithm="fedavg", num_clients=config.clients, rounds=1, batch_size=config.batch_size,
                  local_epochs=config.epochs, lr=config.lr, optimizer="sgd", seed=config.seed, device=config.device)
    local = LocalTraining(config.lr, config.batch_size, epochs=config.epochs)
    knowledge = Knowledge(data.info.input_shape, local_training=local)
    audit = Audit("fedavg_inversion", ThreatModel(protocol="fedavg"), knowledge=knowledge, seed=config.seed,
                  device=config.device, iterations=config.iterations, orders=config.orders)
    torch.manual_seed(config.seed)
    model = build_model("cnn", data.info.input_shape, data.info.num_classes)
    build_federation(FederationSpec(val_fraction=0.0), fl, audit=audit, model=model,
                     datasets=(data.subset(chosen), data.subset(torch.arange(16))), progress=False).run()
    records = [r for r in audit.records if r.status == "attacked"]
    ig = ATTACKS.build("ig", iterations=config.iterations, seed=config.seed)
    rows = []
    for record in records:
        images, labels = record.truth
        distinct = torch.unique(images.flatten(1), dim=0).view(-1, *images.shape[1:])  # each epoch repeats them
        ours = score(record.reconstruction, distinct, near_psnr=THRESHOLD)
        theirs = score(ig.reconstruct(record.observed, None, knowledge, device=config.device), distinct,
                       near_psnr=THRESHOLD)
        for name, scores in (("fedavg_inversion", ours), ("ig", theirs)):
            rows.append({"client": record.source, "attack": name, "images": len(distinct), "psnr": scores["psnr"],
                         "ssim": scores["ssim"], "recovered": _recovered(scores, len(distinct))})
    summary = {name: sum(r["recovered"] for r in rows if r["attack"] == name)
               / max(1, sum(r["images"] for r in rows if r["attack"] == name)) for name in ("fedavg_inversion", "ig")}
    text = (f"FedAvg inversion (Dimitrov et al. 2022) vs IG: {config.clients} clients x {config.samples} images, "
            f"{config.epochs} epoch(s) of batches of {config.batch_size}, lr {config.lr}, {config.iterations} "
            f"iterations\n" + "".join(f"{k:17s} share of images >= {THRESHOLD:.0f} dB: {v:.2f}\n"
                                     for k, v in summary.items()))
    results.write_json("results.json", {"config": asdict(config), "rows": rows, "recovered_share": summary})
    comparison = Comparison(
        "Share of images recovered (PSNR >= 20 dB) from multi-step FedAvg updates",
        ["attack", "share >= 20 dB (ours)", "share >= 20 dB (paper, FEMNIST)", "mean PSNR dB (ours)",
         "mean SSIM (ours)"],
        [[name, summary[key], paper, _mean(rows, key, "psnr"), _mean(rows, key, "ssim")]
         for name, key, paper in (("fedavg_inversion", "fedavg_inversion", f"> {DIMITROV2022_FEMNIST_RECOVERED:.2f}"),
                                  ("ig (same updates)", "ig", "-"))],
        [f"ours: {config.dataset} at 32x32, Scheliga et al.'s CNN (untrained), {config.clients} clients of "
         f"{config.samples} images, {config.epochs} epoch(s), batch {config.batch_size}, lr {config.lr}, "
         f"{config.iterations} iterations, {config.orders} epoch order(s) averaged, seed {config.seed}; paper: "
         "FEMNIST, its CNN, several epochs, its full optimisation and label-count recovery"])
    results.write_text("comparison.md", comparison_markdown("Dimitrov et al. 2022: ours beside the paper",
                                                            [comparison]))
    return {"text": text, "rows": rows, "recovered_share": summary}


def _mean(rows: list[dict], attack: str, key: str) -> float:
    """Mean of ``key`` over the clients' rows of ``attack``, weighted by their images."""
    own = [r for r in rows if r["attack"] == attack]
    return sum(r[key] * r["images"] for r in own) / max(1, sum(r["images"] for r in own))


def _recovered(scores: dict, images: int) -> int:
    """True images whose best candidate reaches 20 dB (the scorer's per-point PSNR share at that threshold)."""
    return round(scores[near_key(THRESHOLD)] * images)
