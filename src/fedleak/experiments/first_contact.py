"""``fedleak detect-eval --first-contact``: does the first-contact chain (:mod:`fedleak.detection.first_contact`)
refuse every manipulation at the first round it sees one, and how often does it refuse a benign model?

Benign client-rounds: per model, short FedAvg runs in several *variants* (IID and Dirichlet(0.1) clients, the
defenses dropout, DP-SGD and CVB switched on as far as the model takes them, clients holding only
``small_samples`` samples); before every round every client checks the model it receives (round 1: untrained; later rounds: the FedAvg-trained model) with no
memory of earlier rounds. Malicious: in the variants without defenses, at ``attack_rounds`` (the untrained and a
trained model) every setting of :func:`fedleak.attacks.settings.attack_settings` plus LOKI and model
inconsistency is applied to the global model and checked by ``attack_clients`` clients
(:func:`fedleak.cases.probe.malicious_rounds`; LOKI and model inconsistency: the model each client is sent). Every client checks ``samples`` of its own samples. Beside the
suite, the paper's detectors run on the same models with the same data (architecture, filter ratio, D-SNR and
the warm-up Z-score with no remembered round): the paper-mode columns. No threshold is fitted: every detector
keeps the threshold its module sets a priori. Cost: each check's seconds over the same client's local epoch. SEER
runs on ``cnn-bn``, the 32x32 batch-norm CNN its shipped checkpoint was trained for (n/a elsewhere); the language
model ``embedding_lm`` learns next tokens of the image-token sequences (:func:`fedleak.data.tokens.next_tokens`).
Cells go to ``first_contact_cells.jsonl`` as they finish (a rerun skips them).
"""
from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.attacks.settings import attack_settings, extra_settings
from fedleak.cases.probe import malicious_rounds
from fedleak.data.base import TensorDataset
from fedleak.defenses import apply_defenses
from fedleak.detection.chain import (DEMOTED, FIRST_CONTACT, FIRST_CONTACT_EVAL, PAPER, ChainSettings, any_flagged,
                                     build_chain, detector_mod, verdict_rows)
from fedleak.fl import FederationSpec, build_federation
from fedleak.models import build_model
from fedleak.report import ResultsDir
from fedleak.study.manipulated import ManipulatedRounds, load_data, registry_name, timed


@dataclass(frozen=True)
class Variant:
    """One benign setting: ``partition`` ("iid" or "dirichlet" with alpha 0.1), ``defenses`` (the
    :func:`fedleak.defenses.parse_defenses` text, "" for none; a model takes the largest part of it that applies
    to it, :func:`applicable_defenses`), ``small`` (each client holds ``small_samples``)."""

    partition: str
    defenses: str = ""
    small: bool = False

    @property
    def name(self) -> str:
        return "-".join([self.partition, self.defenses.replace(",", "+") or "none", "small" if self.small else "full"])


VARIANTS = (Variant("iid"), Variant("dirichlet"), Variant("iid", "dropout,dp,cvb"), Variant("dirichlet", small=True))


@dataclass
class FirstContactConfig(ManipulatedRounds):
    """The first-contact evaluation of ``models`` (registry names, or ``name-label`` for one registry model with
    several option sets, e.g. ``resnet18-group``; ``model_options`` per entry; image size ``sizes``) under each of
    ``variants``; a small client holds ``small_samples`` training samples."""

    models: tuple[str, ...] = ("cnn", "fcnn", "vgg_cnn", "resnet18-batch", "resnet18-group", "vit_small",
                               "text_transformer", "imdb_fc", "embedding_lm", "cnn-bn")
    model_options: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=lambda: {"cnn-bn": (32, 32)})  # SEER's shipped BN checkpoint: 1x32x32
    variants: tuple[Variant, ...] = VARIANTS
    rounds: int = 3
    attack_rounds: tuple[int, ...] = (1, 3)
    attack_clients: int = 2
    samples: int = 32
    small_samples: int = 32
    alpha: float = 0.1

    def __post_init__(self):
        super().__post_init__()
        self.models = tuple(self.models)
        self.variants = tuple(v if isinstance(v, Variant) else Variant(**v) for v in self.variants)


def applicable_defenses(model: nn.Module, model_name: str, defenses: str, input_shape: tuple) -> tuple:
    """``(defended model, gradient_fn, mods, defenses used)`` for the largest subset of ``defenses`` that applies to
    the model (CVB has default placements for some models only; DP-SGD refuses batch norm)."""
    names = [d for d in defenses.split(",") if d]
    for size in range(len(names), -1, -1):
        for subset in itertools.combinations(names, size):
            try:
                return (*apply_defenses(model, ",".join(subset), model_name=model_name, input_shape=input_shape),
                        ",".join(subset))
            except ValueError:
                continue
    raise AssertionError("no defenses always applies")


def model_data(config: FirstContactConfig, model: str) -> tuple[TensorDataset, TensorDataset]:
    """The bundled data at the model's size (:attr:`FirstContactConfig.sizes`, else 16x16), as tokens for the
    text models (:func:`fedleak.study.manipulated.load_data`)."""
    return load_data("bundled", config.sizes.get(model, (16, 16)), model)


def verdict_columns(verdicts) -> dict:
    """Per detector: flagged, score, layer; the suite's and the paper's chain flagged if any of theirs is."""
    rows = verdict_rows(verdicts)
    seconds = sum(rows[name]["seconds"] for name in FIRST_CONTACT if name in rows)
    return {"suite": any_flagged(rows, FIRST_CONTACT),
            "suite_before_demotion": any_flagged(rows, FIRST_CONTACT + DEMOTED),
            "paper": any_flagged(rows, PAPER), "suite_seconds": seconds,
            "detectors": {k: {"flagged": v["flagged"], "score": v["score"], "layer": v["layer"]}
                          for k, v in rows.items()}}


def run_variant(config: FirstContactConfig, model_name: str, variant: Variant, results: ResultsDir,
                done: dict, bar: tqdm) -> None:
    """One FedAvg run: every client checks every round's model; the attacks at ``attack_rounds`` (no defenses)."""
    train, test = model_data(config, model_name)
    if variant.small:
        train = train.subset(torch.arange(min(len(train), round(config.small_samples * config.num_clients / 0.9))))
    options = config.model_options.get(model_name, {})
    info = train.info
    name = registry_name(model_name)
    torch.manual_seed(config.seed)
    model = build_model(name, info.input_shape, info.num_classes, **options)
    model, gradient_fn, defense_mods, defenses = applicable_defenses(model, name, variant.defenses, info.input_shape)
    settings = ChainSettings(samples=config.samples, seed=config.seed)  # no remembered round
    chain = build_chain(FIRST_CONTACT_EVAL, model, settings, refuse=False)
    pending = {}
    mod = detector_mod(chain, on_verdicts=lambda client, verdicts: pending.__setitem__(client.client_id, verdicts))
    spec = FederationSpec(model=name, partition=variant.partition, alpha=config.alpha, model_options=options)
    server = build_federation(spec, config.training(), model=model, gradient_fn=gradient_fn,
                              mods=(mod, timed, *defense_mods), datasets=(train, test), progress=False)
    public = test.inputs(slice(0, 256)).to(config.device)
    prefix = f"{model_name}/{variant.name}"

    def record_attack(r: int, s, prepared, verdicts) -> None:
        key = f"{prefix}/round{r}/{s.attack}/{s.setting}"
        for client, client_verdicts in verdicts.items():
            results.add(f"{key}/client{client}", {
                "kind": "malicious", "model": model_name, "variant": variant.name, "round": r,
                "attack": s.attack, "setting": s.setting, "client": client, **verdict_columns(client_verdicts)})
        results.add(f"{key}/done", {"kind": "n/a" if prepared.sent is None else "done", "model": model_name,
                                    "attack": s.attack, "setting": s.setting})

    server_hook = malicious_rounds(
        chain, rounds=() if variant.defenses else config.attack_rounds, clients=config.attack_clients, info=info,
        public=public, on_probe=record_attack,
        skip=lambda r, s: f"{prefix}/round{r}/{s.attack}/{s.setting}/done" in done,
        settings=lambda global_model: (attack_settings(global_model, info, public, config.batch_size)
                                       + extra_settings(info, config.num_clients)))

    def record_benign(record) -> None:
        for client_id, verdicts in sorted(pending.items()):
            results.add(f"{prefix}/round{record.round}/benign/client{client_id}", {
                "kind": "benign", "model": model_name, "variant": variant.name, "defenses": defenses,
                "round": record.round,
                "client": client_id, "accuracy": record.test_accuracy,
                "train_seconds": record.metrics[client_id]["train_seconds"], **verdict_columns(verdicts)})
        pending.clear()
        bar.update(1)
        bar.set_postfix(model=model_name, variant=variant.name)

    server.run(record_benign, before_round=server_hook)
    results.add(f"{prefix}/done", {"kind": "done"})


def summarize_first_contact(cells: list[dict]) -> dict:
    """Detection rate per attack and model (suite and paper chain), false alarms over all benign client-rounds,
    per-detector false alarms and the suite's cost relative to a local epoch."""
    detection, paper, before = defaultdict(dict), defaultdict(dict), defaultdict(dict)
    groups = defaultdict(list)
    for cell in cells:
        if cell.get("kind") == "malicious":
            groups[(cell["attack"], cell["model"])].append(cell)
    for (attack, model), group in sorted(groups.items()):
        detection[attack][model] = sum(c["suite"] for c in group) / len(group)
        paper[attack][model] = sum(c["paper"] for c in group) / len(group)
        before[attack][model] = sum(c.get("suite_before_demotion", c["suite"]) for c in group) / len(group)
    benign = [c for c in cells if c.get("kind") == "benign"]
    n = len(benign)
    per_detector = defaultdict(int)
    for cell in benign:
        for name, row in cell["detectors"].items():
            per_detector[name] += bool(row["flagged"])
    ratios = [c["suite_seconds"] / c["train_seconds"] for c in benign if c["train_seconds"] > 0]
    by_variant = defaultdict(list)
    for cell in benign:
        by_variant[f"{cell['model']}/{cell['variant']}"].append(cell["suite"])
    return {
        "detection": dict(detection), "false_alarm_rate": sum(c["suite"] for c in benign) / n if n else None,
        "benign_client_rounds": n,
        "paper_detection": dict(paper), "detection_before_demotion": dict(before),
        "false_alarm_rate_before_demotion": (sum(c.get("suite_before_demotion", c["suite"]) for c in benign) / n
                                             if n else None),
        "paper_false_alarm_rate": sum(c["paper"] for c in benign) / n if n else None,
        "false_alarms_per_detector": {k: v / n for k, v in sorted(per_detector.items())},
        "false_alarms_per_variant": {k: sum(v) / len(v) for k, v in sorted(by_variant.items())},
        "benign_trained_client_rounds": sum(c["round"] > 1 for c in benign),
        "cost": {"suite_seconds_per_check": sum(c["suite_seconds"] for c in benign) / n if n else None,
                 "local_epoch_seconds": sum(c["train_seconds"] for c in benign) / n if n else None,
                 "relative_to_local_epoch": sorted(ratios)[len(ratios) // 2] if ratios else None,
                 "statistic": "median over benign client-rounds of (suite seconds / the same client's local epoch)"},
        "not_applicable": sorted({f"{c['attack']} {c['setting']} on {c['model']}" for c in cells
                                  if c.get("kind") == "n/a" and "attack" in c}),
    }


def table(summary: dict) -> str:
    """Markdown: per attack and model the suite's rate beside the paper chain's."""
    models = sorted({m for rates in summary["detection"].values() for m in rates})
    lines = ["| attack | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for attack, rates in sorted(summary["detection"].items()):
        cells = [f"{rates[m]:.2f} / {summary['detection_before_demotion'][attack][m]:.2f} "
                 f"({summary['paper_detection'][attack][m]:.2f})" if m in rates else "n/a" for m in models]
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    lines.append(f"| benign false alarms ({summary['benign_client_rounds']} client-rounds) | "
                 f"{summary['false_alarm_rate']:.4f} / {summary['false_alarm_rate_before_demotion']:.4f} "
                 f"({summary['paper_false_alarm_rate']:.4f}) |")
    return ("Detection at first contact: the default chain FIRST_CONTACT / the chain before demotion, SIGNATURES "
            "(in brackets: paper 000's detectors, no remembered round)\n\n" + "\n".join(lines) + "\n")


def run_first_contact(config: FirstContactConfig, out: str | Path) -> dict:
    """Run (or resume) the evaluation into ``out``; writes ``first_contact.json`` and ``first_contact.md``."""
    out = Path(out)
    results = ResultsDir(out, asdict(config), cells="first_contact_cells.jsonl")
    done = results.finished()
    todo = [(m, v) for m in config.models for v in config.variants if f"{m}/{v.name}/done" not in done]
    with tqdm(total=len(todo) * config.rounds, desc="first-contact") as bar:
        for model_name, variant in todo:
            run_variant(config, model_name, variant, results, done, bar)
    summary = summarize_first_contact(list(results.finished().values()))
    summary["config"] = asdict(config)
    (out / "first_contact.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "first_contact.md").write_text(table(summary))
    return summary
