"""``fedleak detect-eval --guard-cost``: what the leakage guard (:mod:`fedleak.detection.leakage_guard`) costs a
federation: FedAvg test accuracy with the guard on and off, for every registry model, and the guard's seconds per
client-round against the client's own local epoch.

Small runs on a CPU: every registry model at the small options of ``detect-eval --first-contact`` (16x16 bundled
images; the text models read the same images as 16 tokens of 16 brightness levels, the language model learns the
next token), ``num_clients`` IID clients; FedAvg: ``rounds`` rounds of one local epoch (Adam 1e-3, batch 32, the
defaults of paper 001 but the batch); FedSGD: ``fedsgd_rounds`` rounds of one batch-32 gradient per client (server
step 0.5), where the update is one batch's gradient and the readouts of paper 002 apply exactly. The same seed
with and without the guard. The guard checks each update against all the samples the client trained on in the
round; ``guard_over_fit`` is its time over the client's local training of the round (one epoch for FedAvg, one
gradient for FedSGD). Writes ``guard_cost.json`` (and ``config.json``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.nn as nn

from fedleak.checks import choice_field, count_field
from fedleak.data import load_dataset
from fedleak.data.base import DatasetInfo, TensorDataset
from fedleak.detection.leakage_guard import LeakageGuard, leakage_guard_mod
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.study.config import GuardRunConfig

MODELS = {  # registry name: small options (``detect-eval --first-contact``'s)
    "cnn": {"padding": 2}, "fcnn": {"widths": (256, 128)}, "vgg_cnn": {"channels": (8, 16), "hidden": 128},
    "resnet18": {"norm": "batch", "width": 8}, "vit_small": {"depth": 2, "width": 64, "heads": 4},
    "text_transformer": {"vocab_size": 16, "width": 32, "heads": 2},
    "imdb_fc": {"vocab_size": 16, "embed_dim": 8, "hidden": 128}, "embedding_lm": {"embed_dim": 16, "hidden": 32}}
TEXT = ("text_transformer", "imdb_fc", "embedding_lm")
PROTOCOLS = ("fedavg", "fedsgd")


@dataclass
class GuardCostConfig(GuardRunConfig):
    """``models`` (registry names of :data:`MODELS`), ``protocols`` (of :data:`PROTOCOLS`), ``num_clients``,
    ``rounds`` (FedAvg), ``fedsgd_rounds``, ``batch_size``."""

    models: tuple[str, ...] = choice_field(MODELS, tuple(MODELS), label="small model", many=True)
    protocols: tuple[str, ...] = choice_field(PROTOCOLS, PROTOCOLS, label="protocol", many=True)
    num_clients: int = count_field(4)
    rounds: int = count_field(3)
    fedsgd_rounds: int = count_field(30)
    batch_size: int = count_field(32)


def tokens(images: TensorDataset, language: bool) -> TensorDataset:
    """Images as 16 tokens of 16 brightness levels (4x4 blocks in raster order); for a language model each
    sequence but its last token, labelled with the next token."""
    pooled = nn.functional.avg_pool2d(images.inputs(slice(None)).mean(dim=1, keepdim=True), 4).flatten(1)
    x = (pooled * 16).long().clamp_max(15)
    if language:
        return TensorDataset(x[:, :-1], x[:, 1:], DatasetInfo("bundled-tokens", (x.shape[1] - 1,), 16, kind="text"))
    return TensorDataset(x, images.y, DatasetInfo("bundled-tokens", (x.shape[1],), images.info.num_classes,
                                                  kind="text"))


def timed(model: nn.Module, client, call_next):
    """A client mod recording the seconds of local training (what it wraps) in the update's metrics."""
    start = time.perf_counter()
    update = call_next(model)
    update.metrics["fit_seconds"] = time.perf_counter() - start
    return update


def run_model(name: str, config: GuardCostConfig, protocol: str, guard: bool) -> dict:
    """One run of ``name``: final test accuracy, and per client-round the guard's and the fit's seconds."""
    splits = [load_dataset("bundled", split=s, size=(16, 16)) for s in ("train", "test")]
    if name in TEXT:
        splits = [tokens(s, name == "embedding_lm") for s in splits]
    rounds = config.rounds if protocol == "fedavg" else config.fedsgd_rounds
    fl = FLConfig(algorithm=protocol, num_clients=config.num_clients, rounds=rounds, batch_size=config.batch_size,
                  server_lr=0.5, seed=config.seed, device=config.device)
    mods = (leakage_guard_mod(LeakageGuard(tolerance=config.tolerance)), timed) if guard else (timed,)
    spec = FederationSpec(model=name, model_options=MODELS[name])
    server = build_federation(spec, fl, mods=mods, datasets=tuple(splits), progress=False)
    history = server.run()
    metrics = [m for r in history.rounds for m in r.metrics.values()]
    fit = sum(m["fit_seconds"] for m in metrics) / len(metrics)
    result = {"accuracy": history.final_accuracy, "fit_seconds": fit}
    if guard:
        reports = [m["leakage_guard"] for m in metrics]
        result.update(guard_seconds=sum(r["seconds"] for r in reports) / len(reports),
                      zeroed_rows=sum(r["zeroed_rows"] for r in reports) / len(reports))
        result["guard_over_epoch"] = result["guard_seconds"] / fit
    return result


def run_guard_cost(config: GuardCostConfig, out: str | Path) -> dict:
    """Every model with the guard off and on; writes ``guard_cost.json`` and ``config.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in config.models:
        for protocol in config.protocols:
            off, on = run_model(name, config, protocol, False), run_model(name, config, protocol, True)
            rows.setdefault(name, {})[protocol] = {
                "accuracy_off": off["accuracy"], "accuracy_on": on["accuracy"],
                "accuracy_cost": off["accuracy"] - on["accuracy"], "fit_seconds": off["fit_seconds"],
                "guard_seconds": on["guard_seconds"], "guard_over_fit": on["guard_over_epoch"],
                "zeroed_rows_per_update": on["zeroed_rows"]}
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    (out / "guard_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
