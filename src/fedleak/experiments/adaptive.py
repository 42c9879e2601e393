"""``fedleak detect-eval --adaptive``: an attacker who knows the detectors, measured as leakage (issue 21, part 3).

For each manipulation, on the small model it applies to, the attacker tries every camouflage of
:data:`CAMOUFLAGES` against the *whole* first-contact chain (:data:`fedleak.detection.FIRST_CONTACT`, thresholds
known): Gaussian noise of 1e-4 to 1e-1 times the weights' standard deviation (of the sent parameter; of the honest
one where the sent one is constant) on every parameter the manipulation changed (an imprint's rows are then neither parallel nor constant nor mirrored), the positive weights drawn
independently instead of mirrored (the changed matrices' positive entries shuffled across rows), trap rows mixed
with benign rows (half the rows of every changed matrix reset to the honest model's), their combinations, and noise tuned per layer (light on the extraction layer, 0.1 elsewhere).
Each try is one FedSGD round of the case layer (:class:`fedleak.cases.Audit` on :class:`fedleak.fl.Server`): the
server sends the camouflaged model to one client holding the batch, the client runs the chain
(:func:`fedleak.detection.detector_mod`, refusing) and, in the guarded variant, the leakage guard
(:mod:`fedleak.detection.leakage_guard`) on what it sends; the audit reads what was sent and scores it against the
true batch. The honest figures are the same readout of the honest model's update (sent unchanged, no guard) on
the same batches: what a client gives away today by itself. Reported per manipulation, with and without the
guard: the largest exact recall, near-exact share (>= 30 dB) and SSIM of any accepted camouflage, beside the
honest figures, and per camouflage the chain's evidence (each detector's score and threshold, or the refusal).
``holds`` says per figure whether, with the guard, the accepted maximum is at most the honest figure +
:data:`MARGIN` (None where nothing was accepted counts as holding). Text
manipulations read tokens: their "exact recall" is the share of the batch's (position, token) pairs declared.

Measured (``--quick``: one 64-sample batch, seed 0). Accepted camouflages: trap weights 22 of 30, Robbing the Fed
10 of 31 (the paired-bins imprint among them), input forwarding 17, curious kernels 7, class fishing 11, feature
fishing 23, Decepticons 11 (no token read out at any accepted setting), text embedding 0 (its uniform table is
always refused). Without the guard the largest accepted exact / near-exact shares are 0.156 / 0.188 (trap weights;
honest 0.141 / 0.141), 0.109 / 0.125 (paired-bins imprint; honest 0 / 0), 0.109 / 0.188 (class fishing), 0.062 /
0.156 (feature fishing), 0 / 0.062 (input forwarding) and 0 / 0.047 (curious kernels). With the guard every one is 0.000, within the honest
figure + 0.05. SSIM does not hold on the VGG-CNN: the overlays the guard leaves score 0.54 (input forwarding) and
0.50 (curious kernels) against the honest model's 0.01 (its readout through the attack's input map is noise); on the
FC-NN the guarded SSIM (0.49-0.63) holds (the closest: the paired-bins imprint's 0.630 against the honest 0.590). LOKI and model inconsistency are not in the
table (an inserted block is always refused; one client's model per round is another threat model), nor is SEER.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from fedleak import seeds
from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.camouflage import CAMOUFLAGES, ONLY
from fedleak.checks import check_known, choice_field, count_field
from fedleak.cases import Audit, ThreatModel
from fedleak.data import load_dataset
from fedleak.data.base import DatasetInfo, TensorDataset
from fedleak.data.partition import ClientData
from fedleak.detection import detector_mod, first_contact_chain
from fedleak.detection.leakage_guard import LeakageGuard, leakage_guard_mod
from fedleak.fl import Client, FLConfig, Server
from fedleak.models import build_model
from fedleak.models.anatomy import trace
from fedleak.study.config import GuardRunConfig

MARGIN = 0.05  # issue 21's bound: accepted leakage at most the honest model's own + 0.05
MODELS = {  # the small models of ``--first-contact`` (16x16 images; short token sequences)
    "fcnn": {"widths": (256, 128)}, "vgg_cnn": {"channels": (8, 16), "hidden": 128},
    "text_transformer": {"vocab_size": 10000, "width": 32, "heads": 2},
    "imdb_fc": {"vocab_size": 10000, "embed_dim": 8, "hidden": 128}}
TEXT = ("text_transformer", "imdb_fc")
KEYS = {"exact_recall": "recall", "near_share": "near_recall_psnr30", "ssim": "ssim"}


def manipulations(batch_size: int, seq_len: int) -> list[tuple[str, str, dict]]:
    """(attack, model, options) per manipulation (feature fishing's feature and threshold are set per model)."""
    return [("trap_weights", "fcnn", {}),
            ("robbing_the_fed", "fcnn", {"variant": "reuse", "feature_mean": 0.3, "feature_std": 0.1}),
            ("input_forwarding", "vgg_cnn", {}), ("curious_kernels", "vgg_cnn", {}),
            ("class_fishing", "fcnn", {"target_class": 0}), ("feature_fishing", "fcnn", {}),
            ("decepticons", "text_transformer", {"tokens_per_update": batch_size * seq_len}),
            ("text_embedding", "imdb_fc", {})]


@dataclass
class Camouflaged:
    """An attack whose sent model is camouflaged (``"honest"``: the honest model is sent, with the attack's
    secret, for the honest figures); reconstruction is the attack's own."""

    inner: object
    camouflage: str

    @property
    def name(self) -> str:
        return f"{self.inner.name}/{self.camouflage}"

    def prepare(self, model: nn.Module, context: AttackContext):
        sent, secret = self.inner.prepare(model, context)
        if self.camouflage == "honest":
            return model, secret
        generator = torch.Generator().manual_seed(context.seed)
        return CAMOUFLAGES[self.camouflage](copy.deepcopy(sent), model, generator, context.public), secret

    def reconstruct(self, observed, secret, knowledge, *, device="cpu"):
        return self.inner.reconstruct(observed, secret, knowledge, device=device)


@dataclass
class AdaptiveConfig(GuardRunConfig):
    """``camouflages`` tried per manipulation (names of :data:`CAMOUFLAGES`), ``batches`` client batches of
    ``batch_size`` per try, ``seq_len`` tokens per text sample, ``attacks`` (default all of
    :func:`manipulations`), ``samples`` the chain's local samples."""

    camouflages: tuple[str, ...] = choice_field(CAMOUFLAGES, tuple(CAMOUFLAGES), label="camouflage", many=True)
    attacks: tuple[str, ...] | None = None
    batches: int = count_field(1)
    batch_size: int = count_field(64)
    seq_len: int = count_field(16)
    samples: int = count_field(32)

    def __post_init__(self):
        super().__post_init__()
        if self.attacks is not None:
            check_known(self.attacks, [a for a, _, _ in manipulations(1, 1)], "unknown manipulation")


def dataset(model_name: str, config: AdaptiveConfig) -> TensorDataset:
    """16x16 bundled images, or the fortunes corpus cut to ``seq_len`` tokens for the text models."""
    if model_name not in TEXT:
        return load_dataset("bundled", split="train", size=(16, 16))
    text = load_dataset("fortunes", split="train")
    info = DatasetInfo(text.info.name, (config.seq_len,), text.info.num_classes, kind="text")
    return TensorDataset(text.x[:, : config.seq_len].contiguous(), text.y, info)


def batches(data: TensorDataset, attack: str, options: dict, honest: nn.Module, config: AdaptiveConfig):
    """``config.batches`` client batches; a fishing batch holds one fished sample among samples that are not."""
    generator = seeds.generator(config.seed, 0, 0, seeds.DETECTION)
    order = torch.randperm(len(data), generator=generator)
    x, y = data.inputs(order), data.y[order]
    if attack in ("class_fishing", "feature_fishing"):
        if attack == "class_fishing":
            target = y == options["target_class"]
        else:
            target = _features(honest, x)[:, options["feature"]] > options["threshold"]
        fished, other = target.nonzero().flatten(), (~target).nonzero().flatten()
        rest = config.batch_size - 1
        return [(x[idx], y[idx]) for idx in (torch.cat([fished[b:b + 1], other[b * rest:(b + 1) * rest]])
                                            for b in range(config.batches))]
    size = config.batch_size
    return [(x[b * size:(b + 1) * size], y[b * size:(b + 1) * size]) for b in range(config.batches)]


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs of the output layer (what feature fishing thresholds)."""
    seen = []
    handle = trace(model, x[:2]).output_layer().module.register_forward_hook(
        lambda module, args, output: seen.append(args[0].detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0].reshape(len(x), -1)


def one_round(attack, honest: nn.Module, batch, config: AdaptiveConfig, guard: bool, public=None) -> dict:
    """One FedSGD round of the case layer: the server sends ``attack``'s model to one client holding ``batch``
    (the chain refusing, the guard sanitising when ``guard``); the audit's scores, or the refusal."""
    x, y = batch
    info = DatasetInfo("batch", tuple(x.shape[1:]), getattr(honest, "num_classes", 10),
                       kind="image" if x.is_floating_point() else "text")
    data = ClientData(TensorDataset(x, y, info), TensorDataset(x[:0], y[:0], info))
    fl = FLConfig(algorithm="fedsgd", num_clients=1, rounds=1, batch_size=len(y), seed=config.seed,
                  device=config.device)
    mods = [detector_mod(first_contact_chain(honest, samples=config.samples))]
    if guard:
        mods.append(leakage_guard_mod(LeakageGuard(tolerance=config.tolerance)))
    audit = Audit(attack, ThreatModel(server="malicious"), public=public, seed=config.seed, device=config.device)
    server = Server(copy.deepcopy(honest), [Client(0, data, fl, mods=tuple(mods))], fl, progress=False,
                    audit=audit)
    record = server.run_round(1)
    if 0 in record.refused:
        return {"refused": True, "evidence": record.refused[0]}
    scores = audit.records[0].scores
    if not x.is_floating_point():
        scores = {"recall": token_share(audit.records[0].reconstruction, x)}
    verdicts = record.metrics[0].get("detection", [])
    return {"refused": False, **{key: scores.get(name) for key, name in KEYS.items()},
            "evidence": {v["detector"]: [v["score"], v["threshold"]] for v in verdicts}}


def token_share(reconstruction, tokens: torch.Tensor) -> float:
    """Share of the batch's (position, token) pairs the attack declares (pairs, or whole declared sequences)."""
    declared = reconstruction.declared_points()
    if len(declared) == 0:
        return 0.0
    truth = {(p, int(t)) for row in tokens for p, t in enumerate(row.tolist())}
    if declared.shape[1:] == (2,) and tokens.shape[1] != 2:
        found = {tuple(p) for p in declared.tolist()}
    else:
        found = {(p, int(t)) for row in declared for p, t in enumerate(row.tolist()) if t >= 0}
    return len(truth & found) / len(truth)


def _max(points: list[dict], key: str) -> float | None:
    values = [p[key] for p in points if not p["refused"] and p.get(key) is not None]
    return max(values) if values else None


def run_manipulation(attack: str, model_name: str, options: dict, config: AdaptiveConfig) -> dict:
    """Every camouflage of ``attack`` with and without the guard, and the honest figures on the same batches."""
    data = dataset(model_name, config)
    torch.manual_seed(config.seed)
    honest = build_model(model_name, data.info.input_shape, data.info.num_classes, **MODELS[model_name])
    public = None if model_name in TEXT else load_dataset("bundled", split="test", size=(16, 16)).inputs(
        slice(0, 256))  # the server's own data (imprint cuts, fishing thresholds): the test split, not the clients'
    if attack == "feature_fishing":
        features = _features(honest, public)
        options = {**options, "feature": int(features.var(dim=0).argmax())}
        options["threshold"] = float(features[:, options["feature"]].median())
    built = ATTACKS.build(attack, **options)
    cases = batches(data, attack, options, honest, config)
    honest_points = [one_round(Camouflaged(built, "honest"), honest, b, config, False, public) for b in cases]
    row = {"model": model_name, "batches": len(cases), "batch_size": config.batch_size,
           **{f"honest_{k}": _max(honest_points, k) for k in KEYS}, "camouflages": {}}
    for guard in (True, False):
        points = []
        for name in (c for c in config.camouflages if attack in ONLY.get(c, (attack,))):
            tries = [one_round(Camouflaged(built, name), honest, b, config, guard, public) for b in cases]
            point = {"refused": all(t["refused"] for t in tries),
                     **{k: _max(tries, k) for k in KEYS}, "evidence": [t["evidence"] for t in tries]}
            points.append(point)
            row["camouflages"].setdefault(name, {})["guarded" if guard else "unguarded"] = point
        summary = {f"max_accepted_{k}": _max(points, k) for k in KEYS}
        summary["accepted"] = sum(not p["refused"] for p in points)
        if guard:
            row.update(summary)
        else:
            row["without_guard"] = summary
    row["holds"] = {k: row[f"max_accepted_{k}"] is None or row[f"honest_{k}"] is None
                    or row[f"max_accepted_{k}"] <= row[f"honest_{k}"] + MARGIN for k in KEYS}
    return row


def run_adaptive(config: AdaptiveConfig, out: str | Path) -> dict:
    """Every manipulation of :func:`manipulations` (or ``config.attacks``); writes ``adaptive.json`` (manipulation
    -> its row) and ``config.json`` beside it, and returns the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for attack, model_name, options in manipulations(config.batch_size, config.seq_len):
        if config.attacks is None or attack in config.attacks:
            result[attack] = run_manipulation(attack, model_name, options, config)
    (out / "config.json").write_text(json.dumps({**asdict(config), "margin": MARGIN}, indent=2) + "\n")
    (out / "adaptive.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
