"""``fedleak detect-eval --open-world``: how often does the first-contact chain refuse an ordinary benign model
it was not developed against?

Every variant of the benign zoo (:mod:`fedleak.benchmarks.benign_zoo`: real model families in real states, an
evaluation set, not a tuning set) is checked by ``clients`` clients, each with its own ``samples`` local samples
(disjoint draws: Fashion-MNIST images at the variant's input shape, or fortunes token sequences), with every
signature detector fedleak registers for first contact: the default chain :data:`FIRST_CONTACT` and the detectors
:data:`DEMOTED` from it, so that both rates come from the same verdicts. No threshold is touched: each detector
keeps the one its module sets. ``false_alarm_rate`` is the share of (variant, client) checks the default chain
refuses; a detector whose own rate exceeds ``bound`` cannot stay in the default chain (the rule of issue 21).
Every variant gets a verdict: an error in a detector is an error of the run, not a row.
Writes ``open_world.json`` (and ``open_world_cells.jsonl``, one cell per check, which a rerun resumes).
"""
from __future__ import annotations

import copy
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fedleak import seeds
from fedleak.benchmarks.benign_zoo import ZooVariant, samples, source_data, zoo_variants
from fedleak.checks import checked, count_field, share_field
from fedleak.detection.chain import FIRST_CONTACT, SIGNATURES, ChainSettings, build_chain, verdict_rows
from fedleak.study.config import RunConfig
from fedleak.report import ResultsDir

SOURCES = {"image": "fashion", "text": "fortunes-train", "lm": "fortunes-train"}  # the clients' own data


@dataclass
class OpenWorldConfig(RunConfig):
    """``variants`` of the zoo (None: all), each checked by ``clients`` clients on ``samples`` local samples;
    ``detectors`` every signature detector measured (default :data:`SIGNATURES`, the chain before
    demotion); ``chain`` the default chain's detectors among them; ``bound`` the false-alarm rate
    a detector of the default chain must stay under."""

    variants: tuple[str, ...] | None = None
    clients: int = count_field(3)
    samples: int = checked(32, low=3, integer=True)
    detectors: tuple[str, ...] = SIGNATURES
    chain: tuple[str, ...] = FIRST_CONTACT
    bound: float = share_field(0.01)

    def __post_init__(self):
        super().__post_init__()
        self.variants = None if self.variants is None else tuple(self.variants)
        self.detectors, self.chain = tuple(self.detectors), tuple(self.chain)
        missing = [d for d in self.chain if d not in self.detectors]
        if missing:
            raise ValueError(f"the chain's detectors {missing} are not among the measured detectors")
        zoo_variants(self.variants)  # unknown names fail here


def client_batch(variant: ZooVariant, client: int, config: OpenWorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``client``'s own local samples: slice ``client`` of one permutation of the source (drawn from the
    run seed's detection stream), so the clients' samples are disjoint."""
    source = SOURCES[variant.inputs]
    order = torch.randperm(len(source_data(source)[1]), generator=seeds.generator(config.seed, 0, 0, seeds.DETECTION))
    index = order[client * config.samples:(client + 1) * config.samples]
    if len(index) < config.samples:
        raise ValueError(f"{source} holds too few samples for {config.clients} clients of {config.samples}")
    x, y = samples(variant.inputs, variant.shape, source, index)
    return x.to(config.device), y.to(config.device)


def check_variant(variant: ZooVariant, config: OpenWorldConfig) -> list[dict]:
    """One cell per client: every measured detector's verdict on the variant's model."""
    model = variant.build(config.seed).to(config.device)
    local = copy.deepcopy(model)  # the client's own copy of the architecture
    chain = build_chain(config.detectors, local, ChainSettings(samples=config.samples, seed=config.seed),
                        refuse=False)
    cells = []
    for client in range(config.clients):
        start = time.perf_counter()
        verdicts = chain.check(model, client_batch(variant, client, config), device=config.device, remember=False)
        cells.append({"variant": variant.name, "family": variant.family, "state": variant.state,
                      "inputs": variant.inputs, "input_shape": list(variant.shape), "client": client,
                      "seconds": time.perf_counter() - start,
                      "verdicts": {name: {k: row[k] for k in ("flagged", "score", "threshold", "layer")}
                                   for name, row in verdict_rows(verdicts).items()}})
    return cells


def summarize_open_world(cells: list[dict], config: OpenWorldConfig) -> dict:
    """False-alarm rate of the default chain and of every detector, the flagged checks named, the detectors
    over the bound."""
    n = len(cells)
    per_detector = defaultdict(int)
    flagged, by_variant = [], defaultdict(set)
    chain_hits = all_hits = 0
    for cell in cells:
        hits = [d for d, v in cell["verdicts"].items() if v["flagged"]]
        chain_hits += any(d in config.chain for d in hits)
        all_hits += bool(hits)
        for name in hits:
            v = cell["verdicts"][name]
            per_detector[name] += 1
            by_variant[cell["variant"]].add(name)
            flagged.append({"variant": cell["variant"], "family": cell["family"], "state": cell["state"],
                            "client": cell["client"], "detector": name, "in_default_chain": name in config.chain,
                            "layer": v["layer"], "score": v["score"], "threshold": v["threshold"]})
    rates = {d: per_detector[d] / n for d in config.detectors}
    return {
        "benign_variants": len({c["variant"] for c in cells}), "clients": config.clients, "checks": n,
        "default_chain": list(config.chain), "false_alarm_rate": chain_hits / n,
        "measured_detectors": list(config.detectors), "false_alarm_rate_all_measured": all_hits / n,
        "false_alarms_per_detector": rates, "bound": config.bound,
        "over_bound": [d for d, r in rates.items() if r > config.bound],
        "flagged_variants": {k: sorted(v) for k, v in sorted(by_variant.items())},
        "flagged_variants_default_chain": sorted(k for k, v in by_variant.items() if v & set(config.chain)),
        "flagged": flagged,
        "families": sorted({c["family"] for c in cells}),
        "seconds_per_check": sum(c["seconds"] for c in cells) / n if n else None,
    }


def run_open_world(config: OpenWorldConfig, out: str | Path) -> dict:
    """Run (or resume) the evaluation into ``out``; writes ``open_world.json`` with the config beside it."""
    out = Path(out)
    results = ResultsDir(out, asdict(config), cells="open_world_cells.jsonl")
    try:
        variants = zoo_variants(config.variants)
        for variant in tqdm(variants, desc="open-world"):
            if f"{variant.name}/client{config.clients - 1}" in results:
                continue
            for cell in check_variant(variant, config):
                results.add(f"{variant.name}/client{cell['client']}", cell)
        done = results.finished()
        cells = [done[f"{v.name}/client{c}"] for v in variants for c in range(config.clients)]
    finally:
        results.close()
    summary = {**summarize_open_world(cells, config), "config": asdict(config)}
    (out / "open_world.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
