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
from fedleak.checks import count_field
from fedleak.metrics.extraction import best_points
from fedleak.data import load_dataset
from fedleak.study.config import RunConfig
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
    num_clients: int = count_field(10)
    images_per_client: int = count_field(64)
    local_steps: int = count_field(4)
    lr: float = 0.01
    rounds: int = count_field(1)
    attack_options: dict = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.federation, dict):  # a config read back from config.json
            self.federation = FederationSpec(**self.federation)
        if self.federation.model == "cnn" and not self.federation.model_options:
            # 28x28 images through three stride-2 5x5 convolutions
            self.federation = replace(self.federation, model_options={"padding": 2})
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


# --- through Flower's real SecAgg+ ------------------------------------------------------------------------------
# One federation, one round per aggregation: Flower's plain float FedAvg mean first, then SecAgg+ at its defaults,
# then the sweep of clipping_range and quantization_range (each with the other at its default), then the attacker's
# adaptation (conv_scale chosen so the imprint stays inside the clipping range) at the tightest clipping.
CLIPPING_RANGES = (8.0, 1.0, 0.1)
QUANTIZATION_RANGES = (2**22, 2**16, 2**12)


def secagg_plan() -> list[tuple]:
    """The rounds of the run (:func:`fedleak.flower.secagg.settings_plan` over this module's ranges)."""
    from fedleak.flower.secagg import settings_plan

    return settings_plan(CLIPPING_RANGES, QUANTIZATION_RANGES)


def imprint_reach(model, public, config: LokiReproductionConfig, fl: FLConfig, factor: float) -> float:
    """The largest entry of the LOKI imprint layer's weights after one client's local training, as the attacker
    simulates it on ``public`` data (slot 0, ``conv_scale`` x ``factor``): what SecAgg+ will clip."""
    from fedleak.attacks.base import AttackContext
    from fedleak.data import ClientData
    from fedleak.fl.client import Client

    data = public.subset(torch.arange(min(len(public), config.images_per_client)))
    inputs = public.inputs(slice(None))
    options = dict(config.attack_options)
    scale = options.pop("conv_scale", LokiConfig.conv_scale) * factor
    context = AttackContext(tuple(inputs.shape[1:]), None, 1, (0,), inputs, config.seed, config.device)
    sent, secret = ATTACKS.build("loki", conv_scale=scale, **options).prepare(model, context)
    local = sent[0]
    before = local.state_dict()[f"{secret.layer}.weight"].clone()
    update = Client(0, ClientData(train=data, val=data.subset(torch.arange(0))), fl).handle(local, 1)
    return float((before + update.tensors[f"{secret.layer}.weight"]).abs().max())


def adapted_factor(model, public, config: LokiReproductionConfig, fl: FLConfig, clipping_range: float) -> float:
    """The attacker's adaptation to SecAgg+: the imprint's update grows with ``conv_scale`` while the quantisation
    step is fixed, so it multiplies ``conv_scale`` until the simulated imprint weights reach half the clipping
    range (halving again while they would exceed it)."""
    factor = 0.5 * clipping_range / imprint_reach(model, public, config, fl, 1.0)
    for _ in range(8):
        if imprint_reach(model, public, config, fl, factor) <= clipping_range:
            return factor
        factor /= 2
    return factor


class ScaledLoki:
    """LOKI whose one-hot kernel value ``conv_scale`` is multiplied by ``factors[round - 1]`` in each round: the
    attacker's adaptation to SecAgg+'s clipping range (the imprint's update grows with ``conv_scale``)."""

    name = "loki"

    def __init__(self, factors, **options):
        self.factors, self.options = list(factors), options
        self.base = options.pop("conv_scale", LokiConfig.conv_scale)

    def prepare(self, model, context):
        scale = self.base * self.factors[context.round - 1]
        return ATTACKS.build("loki", conv_scale=scale, **self.options).prepare(model, context)

    def reconstruct(self, observed, secret, knowledge=None, *, device="cpu"):
        return ATTACKS.build("loki", **self.options).reconstruct(observed, secret, knowledge, device=device)


def reproduce_loki_secagg(config: LokiReproductionConfig, out: str | Path, *, plan=None, cpus: int | None = None,
                          detect_partitions: tuple[int, ...] = (), detectors: tuple[str, ...] | None = None) -> dict:
    """LOKI through Flower's SecAgg+ (:mod:`fedleak.flower.secagg`) in Flower's simulation engine: the leak rate of
    each round of ``plan`` (default :func:`secagg_plan`), same clients, same seed, same training in every round;
    ``detect_partitions`` run fedleak's first-contact chain of ``detectors`` (a refusal is a SecAgg+ dropout). Writes
    ``results.json`` with ``leak_rate_mean``, ``leak_rate_secagg`` and ``sweep``."""
    from fedleak.flower.secagg import client_partitions, run_secagg

    plan = secagg_plan() if plan is None else list(plan)
    results = ResultsDir(out, {"config": asdict(config), "plan": [(label, None if s is None else s.to_dict(), a)
                                                                  for label, s, a in plan],
                               "detect_partitions": list(detect_partitions),
                               "detectors": None if detectors is None else list(detectors)},
                         cells="rounds.jsonl", resume=False)
    spec = config.federation
    size = {"size": tuple(spec.size)} if spec.size else {}
    train, test = (load_dataset(spec.dataset, root=spec.root, split=split, **size) for split in ("train", "test"))
    parts = client_partitions(len(train), config.num_clients, config.images_per_client, config.seed)
    shape = train.info.input_shape
    torch.manual_seed(config.seed)
    honest = build_model(spec.model, shape, train.info.num_classes, **spec.model_options)
    model = with_loki_block(honest, shape, config.num_clients, config.num_bins)
    fl = FLConfig(algorithm="fedavg", num_clients=config.num_clients, rounds=1, seed=config.seed,
                  batch_size=config.images_per_client // config.local_steps, local_steps=config.local_steps,
                  optimizer="sgd", lr=config.lr, device=config.device)

    threat = ThreatModel(server="malicious", observes="secure_aggregate", protocol="fedavg",
                         rounds=tuple(range(1, len(plan) + 1)))
    factors = [adapted_factor(model, test, config, fl, s.clipping_range) if adapted else 1.0
               for _, s, adapted in plan]
    audit = Audit(ScaledLoki(factors, **config.attack_options), threat,
                  public=test.inputs(slice(None)), seed=config.seed, device=config.device)
    rounds = run_secagg(audit, model, train, parts, fl, [s for _, s, _ in plan],
                        detect_partitions=detect_partitions, detectors=detectors, cpus=cpus)
    cells = {}
    for round, ((label, settings, _), factor, seen) in enumerate(zip(plan, factors, rounds), start=1):
        record = seen.record
        if record is None:
            cell = {"round": round, "leak_rate": 0.0, "status": "no aggregate (too few clients answered)"}
        else:
            best = best_points(record.reconstruction.inputs, record.truth[0]).clamp(0, 1)
            cell = round_cell(record, best, config.images_per_client)
            cell.pop("per_client")
        cell.update(label=label, settings=None if settings is None else settings.to_dict(), conv_scale_factor=factor,
                    answered=seen.answered, dropped=seen.dropped, dropout_reasons=seen.reasons)
        cells[label] = results.add(label, cell)
    rate = {label: cells[label]["leak_rate"] if label in cells else None for label in ("mean", "secagg")}
    summary = {"leak_rate_mean": rate["mean"], "leak_rate_secagg": rate["secagg"],
               "sweep": [c for label, c in cells.items() if label not in ("mean", "secagg")],
               "threshold_ssim": THRESHOLD, "rounds": list(cells.values()), "config": asdict(config)}
    results.write_json("results.json", summary)
    return summary


def report_secagg(summary: dict) -> str:
    """The leak rate of each aggregation of the SecAgg+ run, beside the plain float mean."""
    config = summary["config"]
    lines = [f"LOKI through Flower's SecAgg+, {config['num_clients']} clients x {config['images_per_client']} images, "
             f"FedAvg ({config['local_steps']} local SGD steps); leaked = SSIM > {THRESHOLD}; same clients, same "
             f"seed in every row"]
    for cell in summary["rounds"]:
        settings = cell["settings"] or {}
        what = ("Flower's plain float FedAvg mean" if not settings else
                f"SecAgg+ clip {settings['clipping_range']:g}, quantisation 2^{settings['quantization_range'].bit_length() - 1}")
        lines.append(f"{cell['label']:>22}: leak rate {cell['leak_rate']:.3f}  SSIM {cell.get('ssim_mean') or 0:.3f}  "
                     f"conv_scale x{cell['conv_scale_factor']:.3g}  answered {cell['answered']}, dropped "
                     f"{cell['dropped']}  ({what})")
    lines.append(f"leak_rate_mean {summary['leak_rate_mean']}, leak_rate_secagg {summary['leak_rate_secagg']}")
    return "\n".join(lines) + "\n"
