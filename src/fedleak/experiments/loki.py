"""LOKI through secure aggregation and FedAvg (Zhao et al., S&P 2024; paper 000 §3.3, ref. [49]): the leak rate per
round, i.e. the share of all clients' images that some reconstruction reproduces with SSIM > 0.9.

A federation of ``num_clients`` clients, each training ``local_steps`` SGD steps on ``images_per_client`` distinct
images (one local epoch), whose global model is the honest CNN with the LOKI block in front
(:func:`fedleak.attacks.malicious.loki.with_loki_block`). Every round, the server sends each client its own
kernels and sees only the secure aggregate; its bin prior is the brightness of the test split (its public data).
Deviations from the paper: Fashion-MNIST (the bundled 2,000 images) instead of MNIST/CIFAR-100/Tiny ImageNet, and
10 clients x 64 images (the authors' demo) instead of 100 clients, which the bundled data cannot fill.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.malicious.loki import LokiConfig, with_loki_block
from fedleak.cases import Audit, ThreatModel
from fedleak.metrics.extraction import best_points
from fedleak.data import load_dataset
from fedleak.experiments.run_config import RunConfig
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.image import psnr, ssim
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid

# Paper [49] (LOKI): share of images leaked in one FedAvg round, 100 clients; and the authors' public demo.
PAPER = {"leak_rate_100_clients": (0.76, 0.86), "demo_10_clients_x_64": 575 / 640}
THRESHOLD = 0.9  # SSIM above which an image counts as leaked


@dataclass
class LokiReproductionConfig(RunConfig):
    """One LOKI experiment: the ``federation``'s data and honest model (a cnn gets padding 2 unless given options),
    ``num_clients`` x ``images_per_client`` images, ``local_steps`` SGD steps of learning rate ``lr`` per round,
    ``rounds`` rounds (each attacked); ``attack_options`` go to the ``loki`` attack (its defaults:
    :class:`~fedleak.attacks.malicious.loki.LokiConfig`)."""

    federation: FederationSpec = field(default_factory=FederationSpec)
    num_clients: int = 10
    images_per_client: int = 64
    local_steps: int = 4
    lr: float = 0.01
    rounds: int = 1
    attack_options: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.federation, dict):  # a config read back from config.json
            self.federation = FederationSpec(**self.federation)
        if self.federation.model == "cnn" and not self.federation.model_options:
            # 28x28 images through three stride-2 5x5 convolutions
            self.federation = replace(self.federation, model_options={"padding": 2})
        for name in ("num_clients", "images_per_client", "local_steps", "rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.images_per_client % self.local_steps:
            raise ValueError(f"images_per_client ({self.images_per_client}) must be a multiple of local_steps "
                             f"({self.local_steps}): each step trains on a batch of equal size")
        ATTACKS.check_options("loki", self.attack_options)

    @property
    def num_bins(self) -> int:
        return self.attack_options.get("num_bins", LokiConfig.num_bins)


def round_cell(record, best: torch.Tensor, images_per_client: int) -> dict:
    """The leak rate of one attacked round (all clients', and each client's) from each true image's nearest
    candidate ``best``, with the exact-extraction scores of the audit."""
    truth = record.truth[0]
    quality, peak = ssim(best, truth), psnr(best, truth).clamp_max(100)
    leaked = quality > THRESHOLD
    per_client = leaked.view(-1, images_per_client).float().mean(dim=1)
    return {"round": record.round, "images": len(truth), "leak_rate": float(leaked.float().mean()),
            "leaked": int(leaked.sum()), "per_client": dict(zip(record.clients, per_client.tolist())),
            "psnr_leaked": float(peak[leaked].mean()) if leaked.any() else None,
            "ssim_mean": float(quality.mean()), "exact": record.scores.get("leaked"),
            "declared": record.scores.get("declared"), "candidates": len(record.reconstruction)}


def reproduce_loki(config: LokiReproductionConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the federation (unless ``out`` holds every round already), write ``results.json`` with the mean
    ``leak_rate`` over rounds, each round's cell, the paper's figures, and ``reconstructions.png``."""
    results = ResultsDir(out, asdict(config), cells="rounds.jsonl")
    keys = [f"round-{r}" for r in range(1, config.rounds + 1)]
    if not all(key in results for key in keys):
        spec = config.federation
        size = {"size": tuple(spec.size)} if spec.size else {}
        train, test = (load_dataset(spec.dataset, root=spec.root, split=split, **size) for split in ("train", "test"))
        shape = train.info.input_shape
        torch.manual_seed(config.seed)  # the honest model's and the LOKI block's initialisation
        honest = build_model(spec.model, shape, train.info.num_classes, **spec.model_options)
        model = with_loki_block(honest, shape, config.num_clients, config.num_bins)
        fl = FLConfig(algorithm="fedavg", num_clients=config.num_clients, rounds=config.rounds,
                      batch_size=config.images_per_client // config.local_steps, local_steps=config.local_steps,
                      optimizer="sgd", lr=config.lr, seed=config.seed, device=config.device)
        threat = ThreatModel(server="malicious", observes="secure_aggregate", protocol="fedavg",
                             rounds=tuple(range(1, config.rounds + 1)))
        audit = Audit("loki", threat, public=test.inputs(slice(None)), seed=config.seed, device=config.device,
                      **config.attack_options)
        server = build_federation(spec, fl, audit=audit, model=model, datasets=(train, test), progress=progress)
        short = [c.client_id for c in server.clients if len(c.data.train) < config.images_per_client]
        if short:
            raise ValueError(f"clients {short} hold fewer than {config.images_per_client} training images; use "
                             f"fewer clients or images per client")

        def record_round(_):
            record = next(r for r in reversed(audit.records) if r.status == "attacked")
            truth = record.truth[0]
            best = best_points(record.reconstruction.inputs, truth).clamp(0, 1)
            cell = results.add(f"round-{record.round}", round_cell(record, best, config.images_per_client))
            if record.round == 1:
                count = min(32, config.images_per_client)
                found = ssim(best[:count], truth[:count]) > THRESHOLD
                image_grid([truth[:count], best[:count]], results.path / "reconstructions.png",
                           row_labels=[f"client {record.clients[0]}", f"LOKI ({cell['leak_rate']:.0%} leaked)"],
                           missing=[None, ~found])
            record.observed = None  # the round's aggregate is large; its cell keeps what is needed

        server.run(on_round=record_round)
    cells = [results.finished()[key] for key in keys]
    summary = {"leak_rate": sum(c["leak_rate"] for c in cells) / len(cells), "threshold_ssim": THRESHOLD,
               "rounds": cells, "paper": PAPER, "config": asdict(config)}
    results.write_json("results.json", summary)
    return summary


def report(summary: dict) -> str:
    """Our leak rate per round beside the paper's."""
    config = summary["config"]
    bins = LokiReproductionConfig(**config).num_bins
    lines = [f"LOKI, {config['num_clients']} clients x {config['images_per_client']} images, FedAvg "
             f"({config['local_steps']} local SGD steps), secure aggregation, {bins} bins; "
             f"leaked = SSIM > {THRESHOLD}"]
    for cell in summary["rounds"]:
        lines.append(f"round {cell['round']}: leak rate {cell['leak_rate']:.3f} ({cell['leaked']}/{cell['images']}),"
                     f" exact {cell['exact']}, PSNR of leaked {cell['psnr_leaked'] or 0:.1f} dB")
    low, high = PAPER["leak_rate_100_clients"]
    lines.append(f"mean leak rate {summary['leak_rate']:.3f}   [paper: {low:.2f}-{high:.2f} with 100 clients; "
                 f"authors' demo {PAPER['demo_10_clients_x_64']:.3f} with 10 x 64]")
    return "\n".join(lines) + "\n"
