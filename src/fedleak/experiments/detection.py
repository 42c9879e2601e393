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

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from fedleak.attacks.settings import attack_settings
from fedleak.cases.probe import malicious_rounds
from fedleak.detection.chain import PAPER, ChainSettings, build_chain, detector_mod, verdict_rows
from fedleak.detection.verdict import Verdict
from fedleak.fl import FederationSpec, build_federation
from fedleak.models import build_model
from fedleak.study.cells import run_cells
from fedleak.study.detection_report import summarize_cells, write_report
from fedleak.study.manipulated import ManipulatedRounds, load_data, timed
from fedleak.report import ResultsDir


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


def chain_settings(config: DetectEvalConfig) -> ChainSettings:
    """The settings of the paper's detectors (:data:`fedleak.detection.chain.PAPER`) every client runs."""
    return ChainSettings(samples=config.samples, seed=config.seed, remember_rounds=config.remember_rounds,
                         dsnr_batch=config.dsnr_batch)


def run_partition(config: DetectEvalConfig, partition: str, finished: frozenset = frozenset()) -> list[tuple]:
    """One benign FedAvg run with every client checking every round, and the attacks at ``attack_rounds``
    checked, before the round, by the clients' detectors on the model the round would send; its cells as
    ``(key, cell)`` in the order they were made (attack settings already in ``finished`` are not checked again)."""
    train, test = load_data(config.dataset, config.size, config.model)
    pending: dict[int, list[Verdict]] = {}
    records: list[tuple[str, dict]] = []
    local = build_model(config.model, train.info.input_shape, train.info.num_classes, **config.model_options)
    chain = build_chain(PAPER, local, chain_settings(config), refuse=False)
    mod = detector_mod(chain, on_verdicts=lambda client, verdicts: pending.__setitem__(client.client_id, verdicts))
    spec = FederationSpec(dataset=config.dataset, model=config.model, size=config.size, partition=partition,
                          alpha=config.alpha, model_options=config.model_options)
    server = build_federation(spec, config.training(), mods=(mod, timed), datasets=(train, test), progress=False)
    public = test.inputs(slice(0, 256)).to(config.device)
    bar = tqdm(total=config.rounds, desc=f"detect-eval {config.model} {partition}")

    def skip(r: int, s) -> bool:
        key = f"{partition}/round{r}/{s.attack}/{s.setting}"
        return all(f"{key}/client{c}" in finished or f"{key}/n-a" in finished for c in range(config.attack_clients))

    def record_attack(r: int, s, prepared, verdicts) -> None:
        key = f"{partition}/round{r}/{s.attack}/{s.setting}"
        if prepared.sent is None:
            records.append((f"{key}/n-a", {"kind": "n/a", "attack": s.attack, "setting": s.setting,
                                           "reason": prepared.reason}))
        for client, client_verdicts in verdicts.items():
            records.append((f"{key}/client{client}", {
                "kind": "malicious", "partition": partition, "round": r, "attack": s.attack, "setting": s.setting,
                "client": client, "detectors": verdict_rows(client_verdicts)}))

    server_hook = malicious_rounds(chain, rounds=config.attack_rounds, clients=config.attack_clients,
                                   info=train.info, public=public, on_probe=record_attack, skip=skip,
                                   settings=lambda model: attack_settings(model, train.info, public,
                                                                          config.batch_size))

    def record_benign(record) -> None:
        for client_id, verdicts in sorted(pending.items()):
            records.append((f"{partition}/round{record.round}/benign/client{client_id}", {
                "kind": "benign", "partition": partition, "round": record.round, "client": client_id,
                "accuracy": record.test_accuracy, "detectors": verdict_rows(verdicts),
                "train_seconds": record.metrics[client_id]["train_seconds"]}))
        pending.clear()
        bar.update(1)
        bar.set_postfix(acc=f"{record.test_accuracy:.3f}")

    with bar:
        server.run(record_benign, before_round=server_hook)
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
