"""Yin et al. 2021 ("See Through Gradients", GradInversion) eq. 5, issue 24: the batch-norm statistics prior vs
none, inverting one client's update of a batch of B >= 8 images on a batch-norm network (a ResNet-18 narrowed to
fit 2 CPU cores, or at --quick Scheliga et al.'s CNN with batch norm at 16x16: IG failed on the ResNet-18 of
width 4 with and without the prior at 200 iterations, SSIM 0.04 and 0.01 at 32x32 in about 19 minutes, and at
16x16 SSIM 0.05 without, 0.03 / 0.08 / 0.01 inferred / running / proxy in about 9 minutes, loaded), SSIM
against the true images (:mod:`fedleak.metrics.image` through :func:`fedleak.cases.scoring.score`).

Each row is one case run by the case layer: a one-round federation (:func:`fedleak.fl.build_federation`) whose
server runs an :class:`fedleak.cases.Audit` of IG with ``bn_prior`` set, under a FedAvg threat model of one local
step, in LeakPro's three modes: "inferred" (the client's batch statistics read off the BN buffers of its update),
"running" (the running statistics of the model as sent, trained beforehand on other images) and "proxy" (the
statistics of the server's public images, here the very images that trained the running statistics).
Measured at --quick (loaded 2 cores), SSIM none / inferred / running / proxy: seed 0: 0.510 / 0.569 / 0.572 /
0.572; seed 1: 0.574 / 0.511 / 0.596 / 0.585. The running and proxy statistics help a little in both seeds (+0.01
to +0.06); the inferred ones in one seed only. A FedSGD gradient of 8 on a one-BN-layer CNN at 16x16 went the other
way (none 0.528, running 0.489, proxy 0.493).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fedleak.attacks.base import Knowledge, LocalTraining
from fedleak.cases import Audit, ThreatModel
from fedleak.data import load_dataset
from fedleak.study.paper_tables import YIN2021_BN_PRIOR_CLAIM
from fedleak.study.config import RunConfig
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.comparison import Comparison, comparison_markdown

LOCAL_LR = 0.1
ROWS = (("fedavg", "none"), ("fedavg", "inferred"), ("fedavg", "running"), ("fedavg", "proxy"))
MODEL_OPTIONS = {"resnet18": lambda config: {"norm": "batch", "width": config.width},
                 "cnn": lambda config: {"norm": "batch", "padding": 2}}


@dataclass
class BNPriorConfig(RunConfig):
    """``batch_size`` images of one client (``size`` x ``size``), ``network`` with batch norm ("resnet18" of
    first-stage ``width``, or Scheliga et al.'s "cnn" with a batch-norm layer after each convolution), running
    statistics trained on ``warmup_batches`` batches of other images (the server's public data for "proxy"), IG
    for ``iterations`` with ``bn_weight``; ``rows``: (protocol, bn_prior) cases."""

    dataset: str = "bundled"
    root: str | None = None
    network: str = "resnet18"
    size: int = 32
    batch_size: int = 8
    width: int = 8
    iterations: int = 1000
    bn_weight: float = 1e-2
    warmup_batches: int = 40
    rows: tuple = field(default_factory=lambda: ROWS)

    @classmethod
    def quick(cls, **overrides) -> "BNPriorConfig":
        """The batch-norm CNN at 16x16, 200 iterations: minutes on 2 CPU cores (the ResNet-18 of width 4 at 32x32
        took about 19 minutes loaded and IG failed on it with and without the prior, SSIM 0.04 and 0.01)."""
        return cls(**{"network": "cnn", "size": 16, "iterations": 200, **overrides})


def _model(config: BNPriorConfig, data) -> torch.nn.Module:
    torch.manual_seed(config.seed)
    model = build_model(config.network, data.info.input_shape, data.info.num_classes,
                        **MODEL_OPTIONS[config.network](config))
    model.train()
    with torch.no_grad():  # the server's model has seen other data: its running statistics are trained
        for b in range(config.warmup_batches):
            model(data.inputs(slice(1000 + 16 * b, 1016 + 16 * b)))
    return model


def run_row(config: BNPriorConfig, data, protocol: str, bn_prior: str) -> dict:
    """One case: the client's update of its batch, inverted by IG with ``bn_prior``; the audit's scores."""
    train = data.subset(torch.arange(0, 9 * config.batch_size, 9))  # one client, one batch of mixed classes
    fl = FLConfig(algorithm=protocol, num_clients=1, rounds=1, batch_size=config.batch_size, lr=LOCAL_LR,
                  optimizer="sgd", local_steps=1 if protocol == "fedavg" else None, seed=config.seed,
                  device=config.device)
    knowledge = Knowledge(data.info.input_shape, local_training=LocalTraining(LOCAL_LR, config.batch_size))
    public = data.inputs(slice(1000, 1000 + 16 * config.warmup_batches))  # the images that trained the statistics
    audit = Audit("ig", ThreatModel(protocol=protocol), knowledge=knowledge, seed=config.seed, device=config.device,
                  public=public, iterations=config.iterations, bn_prior=bn_prior, bn_weight=config.bn_weight)
    build_federation(FederationSpec(val_fraction=0.0), fl, audit=audit, model=_model(config, data),
                     datasets=(train, data.subset(torch.arange(16))), progress=False).run()
    (record,) = audit.records
    return {"protocol": protocol, "bn_prior": bn_prior, "used": record.reconstruction.info["bn_prior"],
            "ssim": record.scores["ssim"], "psnr": record.scores["psnr"], "seconds": record.seconds}


def reproduce_bn_prior(config: BNPriorConfig, out: str | Path) -> dict:
    """Run every row (resumable), write ``results.json`` and ``comparison.md``; return the rows and the text."""
    if config.network not in MODEL_OPTIONS:
        raise ValueError(f"bn-prior: unknown network {config.network!r}; valid: {', '.join(MODEL_OPTIONS)}")
    results = ResultsDir(out, asdict(config))
    data = load_dataset(config.dataset, root=config.root, size=(config.size, config.size))
    rows = []
    for protocol, prior in config.rows:
        key = f"{protocol}-{prior}"
        rows.append(results.finished().get(key) or results.add(key, run_row(config, data, protocol, prior)))
    lines = [f"BN statistics prior (Yin et al. 2021) on {config.network} with batch norm, B = "
             f"{config.batch_size}, IG {config.iterations} iterations, bn_weight {config.bn_weight}", ""]
    lines += [f"{r['protocol']:7s} bn_prior={r['bn_prior']:8s} ({r['used']:8s})  SSIM {r['ssim']:.3f}  "
              f"PSNR {r['psnr']:.2f} dB" for r in rows]
    text = "\n".join(lines) + "\n"
    results.write_json("results.json", {"config": asdict(config), "rows": rows})
    comparison = Comparison(
        "GradInversion's BN prior vs none (SSIM)", ["protocol", "prior (ours)", "SSIM (ours)", "PSNR dB (ours)",
                                                    "paper"],
        [[r["protocol"], r["used"], r["ssim"], r["psnr"], YIN2021_BN_PRIOR_CLAIM] for r in rows],
        [f"ours: {config.dataset} at {config.size}x{config.size}, one client batch of {config.batch_size}, "
         f"{config.network}" + (f" width {config.width}" if config.network == "resnet18" else "") + " with batch norm"
         f", {config.iterations} IG iterations, seed {config.seed}; paper: ImageNet, trained ResNet-50, 20k "
         "iterations, many restarts and a group-consistency prior (not implemented here)"])
    results.write_text("comparison.md", comparison_markdown("Yin et al. 2021: ours beside the paper", [comparison]))
    return {"text": text, "rows": rows}
