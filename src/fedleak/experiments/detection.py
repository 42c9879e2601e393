"""``fedleak detect-eval``: which client-side detector catches which malicious model (Wang & Li §3, §5).

Benign: a FedAvg run per partition (IID and Dirichlet non-IID) in which every client checks every model it
receives (the detector mod in recording mode) — the false-alarm rate over all client-rounds. Malicious: at the
chosen rounds each applicable manipulation of :data:`fedleak.attacks.MALICIOUS`, at several
hyper-parameters, is applied to the global model and checked by ``attack_clients`` clients with their own data and
detector state — the detection rate per attack and detector. Detectors: the architecture check, the filter ratio,
D-SNR, the warm-up Z-score of the paper (steps 1..5 scored against earlier steps) and the same with the
client's memory of earlier rounds (``warmup_zscore+rounds``, this package's extension). Every verdict is compared
with the detector's fixed threshold and with one calibrated (:mod:`fedleak.detection.calibration`) on the benign
rounds of the even-numbered clients, reported on the odd-numbered ones. Cells go to ``cells.jsonl`` as they finish.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks import AttackContext, prepare
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.data import load_dataset
from fedleak.data.base import DatasetInfo, TensorDataset
from fedleak.detection import DetectorChain, build_detector, detector_mod
from fedleak.detection.verdict import Verdict
from fedleak.fl import Client, FederationSpec, FLConfig, build_federation
from fedleak.models import build_model
from fedleak.models.anatomy import trace
from fedleak.study.cells import run_cells
from fedleak.study.config import RunConfig
from fedleak.study.detection_report import summarize_cells, write_report
from fedleak.report import ResultsDir

@dataclass
class ManipulatedRounds(RunConfig):
    """What detect-eval and the first-contact evaluation share: ``num_clients`` clients train ``rounds`` FedAvg
    rounds (Adam at ``lr``, batches of ``batch_size``; Dirichlet splits of concentration ``alpha``); the server
    manipulates the model of ``attack_rounds`` (early, late) and ``attack_clients`` clients check each manipulated
    model on ``samples`` local samples."""

    num_clients: int = 10
    rounds: int = 20
    attack_rounds: tuple[int, ...] = (2, 15)
    attack_clients: int = 10
    samples: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    alpha: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        self.attack_rounds = tuple(self.attack_rounds)
        if any(not 1 <= r <= self.rounds for r in self.attack_rounds):
            raise ValueError(f"attack rounds {self.attack_rounds} must lie in 1..{self.rounds}")
        if not 1 <= self.attack_clients <= self.num_clients:
            raise ValueError(f"attack_clients must be in 1..{self.num_clients}, got {self.attack_clients}")

    def training(self) -> FLConfig:
        """The clients' FedAvg recipe."""
        return FLConfig(num_clients=self.num_clients, rounds=self.rounds, batch_size=self.batch_size, lr=self.lr,
                        seed=self.seed, device=self.device)


@dataclass
class DetectEvalConfig(ManipulatedRounds):
    """One model's evaluation on ``partitions``; ``remember_rounds``: the memory of ``warmup_zscore+rounds``;
    ``false_alarm_rate``: the calibration target; ``dsnr_batch``: D-SNR's batch."""

    model: str = "cnn"
    dataset: str = "bundled"
    size: tuple[int, int] | None = (32, 32)
    model_options: dict = field(default_factory=dict)
    partitions: tuple[str, ...] = ("iid", "dirichlet")
    dsnr_batch: int = 64
    remember_rounds: int = 5
    false_alarm_rate: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        self.size = tuple(self.size) if self.size else None
        self.partitions = tuple(self.partitions)


def image_tokens(dataset: TensorDataset, *, patch: int = 4, levels: int = 16) -> TensorDataset:
    """An image dataset as token sequences for the text transformer when no text corpus is at hand: each
    ``patch x patch`` block's mean brightness quantised to ``levels`` tokens, in raster order."""
    images = dataset.inputs(slice(None)).mean(dim=1, keepdim=True)
    pooled = nn.functional.avg_pool2d(images, patch).flatten(1)
    tokens = (pooled * levels).long().clamp_max(levels - 1)
    info = DatasetInfo(f"{dataset.info.name}-tokens", (tokens.shape[1],), dataset.info.num_classes, kind="text",
                       vocab=tuple(f"level{i}" for i in range(levels)))
    return TensorDataset(tokens, dataset.y, info)


def load_data(config: DetectEvalConfig) -> tuple[TensorDataset, TensorDataset]:
    """Train and test data; image data become tokens for the text transformer (:func:`image_tokens`)."""
    splits = [load_dataset(config.dataset, split=s, **({"size": config.size} if config.size else {}))
              for s in ("train", "test")]
    if config.model == "text_transformer" and splits[0].info.kind == "image":
        splits = [image_tokens(s) for s in splits]
    return splits[0], splits[1]


def make_detectors(config: DetectEvalConfig) -> list:
    """The detectors every client runs, in order (the paper's warm-up column is read from the same verdict)."""
    return [build_detector("architecture"), build_detector("filter_ratio"),
            build_detector("dsnr", batch_size=config.dsnr_batch, seed=config.seed),
            build_detector("warmup_zscore", samples=config.samples, remember_rounds=config.remember_rounds,
                           seed=config.seed)]


def summarize(verdicts: list[Verdict]) -> dict[str, dict]:
    """Per detector column: score, flagged, layer, statistic, seconds; the warm-up verdict gives two columns."""
    out = {}
    for v in verdicts:
        row = {"score": v.score, "threshold": v.threshold, "flagged": v.flagged, "layer": v.layer,
               "statistic": v.statistic, "seconds": v.seconds}
        if v.detector != "warmup_zscore":
            out[v.detector] = row
            continue
        out["warmup_zscore+rounds"] = {**row, "step": v.details["step"]}
        scores = torch.tensor(v.details["zscores"])
        within = scores[1:] if v.details["first_step"] == 0 else scores
        flat = int(torch.nan_to_num(within, nan=torch.inf).argmax())
        series, stat = (flat // 3) % within.shape[1], flat % 3
        score = float(within.flatten()[flat])
        out["warmup_zscore"] = {**row, "score": score, "flagged": score > v.threshold,
                                "layer": v.details["series"][series], "statistic": v.details["statistics"][stat],
                                "step": flat // (3 * within.shape[1]) + 1}
    return out


def classifier_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The inputs of the model's output layer for the batch ``x`` (what feature fishing thresholds), one row per
    sample, or per position of a sequence model's ``(B, L, features)`` input."""
    last = trace(model, x[:1]).output_layer().module
    seen = []
    handle = last.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
        model.train()
    return seen[0].reshape(-1, seen[0].shape[-1])


def attack_settings(model: nn.Module, info: DatasetInfo, public: torch.Tensor, batch_size: int) -> list[tuple]:
    """(attack, setting, attack name, options) for every attack and hyper-parameter tried. ``public`` is data the
    server holds (the test split), for the imprint bins and the fishing threshold."""
    shape, settings = info.input_shape, []
    if info.kind == "image":
        settings += [("trap_weights", f"s={s}", "trap_weights", {"scale_factor": s}) for s in (0.95, 0.8)]
        settings.append(("input_forwarding", "seed=0", "input_forwarding", {}))
        settings += [("curious_kernels", f"c={c}", "curious_kernels", {"scale": c}) for c in (0.5, 1.0)]
        mean, std = brightness_prior(public)
        settings += [("robbing_the_fed", f"insert K={k}", "robbing_the_fed",
                      {"num_bins": k, "feature_mean": mean, "feature_std": std}) for k in (64, 128)]
        settings.append(("robbing_the_fed", "reuse", "robbing_the_fed",
                         {"variant": "reuse", "feature_mean": mean, "feature_std": std}))
    settings += [("class_fishing", f"class={t}", "class_fishing", {"target_class": t})
                 for t in sorted({0, info.num_classes // 2})]
    features = classifier_features(model, public)
    feature = int(features.var(dim=0).argmax())
    for q in (0.5, 0.9):
        threshold = float(features[:, feature].quantile(q))
        settings.append(("feature_fishing", f"quantile={q}", "feature_fishing",
                         {"feature": feature, "threshold": threshold}))
    if info.kind == "text":
        tokens = batch_size * shape[0]
        settings += [("decepticons", f"T={t}", "decepticons", {"tokens_per_update": t}) for t in (tokens, 4 * tokens)]
    return settings


def manipulate(model: nn.Module, info: DatasetInfo, name: str, options: dict) -> tuple[nn.Module | None, str]:
    """The manipulated model, or None and why the manipulation does not apply to this model."""
    try:
        manipulated, _ = prepare(name, model, AttackContext(info.input_shape, info.num_classes), **options)
    except ValueError as error:
        return None, str(error)
    before, after = model.state_dict(), manipulated.state_dict()
    if before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before):
        return None, "changes nothing in this model"
    return manipulated, ""


def _timed(model: nn.Module, client: Client, call_next) -> object:
    """A mod timing local training (one epoch), for the detectors' overhead."""
    start = time.perf_counter()
    update = call_next(model)
    update.metrics["train_seconds"] = time.perf_counter() - start
    return update


def run_partition(config: DetectEvalConfig, partition: str, finished: frozenset = frozenset()) -> list[tuple]:
    """One benign FedAvg run with every client checking every round, and the attacks at ``attack_rounds``
    checked, before the round, by the clients' detectors on the model the round would send; its cells as
    ``(key, cell)`` in the order they were made (attack settings already in ``finished`` are not checked again)."""
    train, test = load_data(config)
    pending: dict[int, list[Verdict]] = {}
    records: list[tuple[str, dict]] = []
    detectors = make_detectors(config)
    local = build_model(config.model, train.info.input_shape, train.info.num_classes, **config.model_options)
    chain = DetectorChain(detectors, local, samples=config.samples, refuse=False)
    mod = detector_mod(chain, on_verdicts=lambda client, verdicts: pending.__setitem__(client.client_id, verdicts))
    spec = FederationSpec(dataset=config.dataset, model=config.model, size=config.size, partition=partition,
                          alpha=config.alpha, model_options=config.model_options)
    server = build_federation(spec, config.training(), mods=(mod, _timed), datasets=(train, test), progress=False)
    public = test.inputs(slice(0, 256)).to(config.device)
    bar = tqdm(total=config.rounds, desc=f"detect-eval {config.model} {partition}")

    def check_attacks(r: int, server) -> None:
        if r not in config.attack_rounds:
            return
        for attack, setting, name, options in attack_settings(server.model, train.info, public, config.batch_size):
            key = f"{partition}/round{r}/{attack}/{setting}"
            if all(f"{key}/client{c}" in finished or f"{key}/n-a" in finished for c in range(config.attack_clients)):
                continue
            manipulated, reason = manipulate(server.model, train.info, name, options)
            if manipulated is None:
                records.append((f"{key}/n-a", {"kind": "n/a", "attack": attack, "setting": setting, "reason": reason}))
                continue
            for client in server.clients[:config.attack_clients]:
                verdicts = chain.check_client(client, manipulated, round=r, remember=False)
                records.append((f"{key}/client{client.client_id}", {
                    "kind": "malicious", "partition": partition, "round": r, "attack": attack,
                    "setting": setting, "client": client.client_id, "detectors": summarize(verdicts)}))

    def record_benign(record) -> None:
        for client_id, verdicts in sorted(pending.items()):
            records.append((f"{partition}/round{record.round}/benign/client{client_id}", {
                "kind": "benign", "partition": partition, "round": record.round, "client": client_id,
                "accuracy": record.test_accuracy, "detectors": summarize(verdicts),
                "train_seconds": record.metrics[client_id]["train_seconds"]}))
        pending.clear()
        bar.update(1)
        bar.set_postfix(acc=f"{record.test_accuracy:.3f}")

    with bar:
        server.run(record_benign, before_round=check_attacks)
    return records


def run_detect_eval(config: DetectEvalConfig, out: str | Path, *, ray: str | None = None) -> dict:
    """Run (or resume) the evaluation of one model into ``out``, one cell per partition, here or on the Ray cluster
    at ``ray`` (:func:`fedleak.study.cells.run_cells`); returns the summary (see :func:`summarize_cells`)."""
    results = ResultsDir(out, asdict(config))
    finished = frozenset(results.finished())
    todo = {f"{p}/done": (p, frozenset(k for k in finished if k.startswith(f"{p}/"))) for p in config.partitions
            if f"{p}/done" not in finished}

    def write(key: str, records: list[tuple[str, dict]]) -> None:
        for name, cell in records:
            results.add(name, cell)
        results.add(key, {"kind": "done"})

    run_cells(run_partition, todo, write, shared=(config,), ray=ray, device=config.device,
              desc=f"detect-eval {config.model} partitions")
    order = {partition: i for i, partition in enumerate(config.partitions)}  # partitions may finish in any order
    cells = sorted(results.finished().values(), key=lambda cell: order.get(cell["key"].split("/")[0], len(order)))
    summary = summarize_cells(cells, config)
    write_report(results, summary, config)
    return summary
