"""``fedleak audit``: fedleak's three questions about one model and one data set, in one resumable run.

1. How much does an update leak? Every attack that applies to the model, each in one short federation round
   scored against the clients' true data.
2. What stops it, at what cost? Each attack again behind each chosen defense, and a short FedAvg run per defense
   for the accuracy it costs.
3. Is the model a trap? With ``threat="malicious"``, every manipulation that applies, and the verdicts of the
   client's first-contact detector chain on each manipulated model and on the honest one.

Order of work: the options are checked when the :class:`~fedleak.audit.config.AuditConfig` is built; then the data
and the model are loaded and checked (:mod:`fedleak.audit.checks`: one forward pass, finite weights, enough data
for the clients), and only then is the results folder opened (its lock taken, ``config.json`` written). Each cell
(:mod:`fedleak.audit.plan`) is keyed by the digest of the inputs, seeds the global generator from its own seed
before it runs (so its draws do not depend on what ran before it in the process: a resumed audit equals an
uninterrupted one) and goes to ``cells.jsonl`` when it finishes; :mod:`fedleak.audit.report` writes
``report.json`` and ``report.html`` from the cells of this digest.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from fedleak.audit.cells import RUNNERS, Cell, Setup
from fedleak.audit.checks import check_clients, check_model, inputs_digest
from fedleak.audit.config import NONE, AuditConfig, default_defenses
from fedleak.audit.inputs import language_model_data, resolve_data, resolve_model
from fedleak.audit.early_stop import bounds, settle
from fedleak.audit.plan import plan
from fedleak.audit.report import write_report
from fedleak.audit.strongest import mechanisms as defense_mechanisms
from fedleak.defenses import stochastic_modules
from fedleak.detection import load_received_model
from fedleak.report import ResultsDir

PUBLIC = 256  # test samples the server holds as its own public data


def build_setup(config: AuditConfig) -> Setup:
    """Load and check the data and the model (and the ``weights``, checked key by key); nothing is written."""
    data, note = language_model_data(config.model, config.data)
    train, test = resolve_data(data, root=config.root, size=config.size, seed=config.seed)
    torch.manual_seed(config.seed)
    resolved = resolve_model(config.model, train.info.input_shape, train.info.num_classes,
                             vocab_size=len(train.info.vocab) or None)
    what = f"model {config.model}"
    if config.weights:
        loaded = load_received_model(config.weights, resolved.model)
        loaded.input_shape, loaded.num_classes = resolved.model.input_shape, resolved.model.num_classes
        resolved = replace(resolved, model=loaded)
        what += f" with weights {config.weights}"
    resolved.model.to(config.device)
    config = default_defenses(config, resolved.model)
    check_model(resolved.model, train, what=what, device=config.device)
    check_clients(train, batch_size=config.batch_size, victims=config.victims,
                  secure_aggregation=config.secure_aggregation, utility_clients=config.utility_clients,
                  utility_samples=config.utility_samples)
    sample = train.inputs(slice(0, 1000))
    low, high = (0.0, 1.0) if train.x.dtype == torch.uint8 else (float(sample.min()), float(sample.max()))
    public = test.inputs(slice(0, PUBLIC)).to(config.device)
    digest = inputs_digest(spec=config.model, registered=resolved.registered, weights=config.weights, train=train,
                           test=test)
    return Setup(config, train, test, resolved, (low, high) if low < high else (0.0, 1.0), public, digest,
                 data=data, notes=[note] if note else [])


def defense_reasons(setup: Setup) -> tuple[dict[str, str], set[str], dict[str, set[str]]]:
    """Why each chosen defense cannot be placed in the model ("" when it can: the library's ``ValueError``), those
    that insert a random module, and what each defended model does that an inversion can mimic."""
    reasons, random, mechanisms = {NONE: ""}, set(), {NONE: set()}
    for defense in setup.config.defenses:
        try:
            model = setup.defended(defense)[0]
        except ValueError as error:  # the defense's own not-applicable signal, with its reason
            reasons[defense] = str(error)
            continue
        reasons[defense] = ""
        mechanisms[defense] = defense_mechanisms(model, defense)
        if stochastic_modules(model):
            random.add(defense)
    return reasons, random, mechanisms


def cell_seed(seed: int, cell: Cell) -> int:
    """The seed of one cell: the run's seed and the cell's label, independent of the order cells run in."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{cell.label}".encode()).digest()[:7], "big")


def run_cell(setup: Setup, cell: Cell, out: Path) -> dict:
    """Run one applicable cell with the global generator seeded from its own seed (its defense modules'
    initialisation, dropout masks, bottleneck draws and DP noise all come from there)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cell_seed(setup.config.seed, cell))
        return RUNNERS[cell.kind](setup, cell, out)


def run_audit(config: AuditConfig, out: str | Path, *, progress: bool = True,
              after_cell: Callable[[Cell], None] | None = None) -> dict:
    """Run (or resume) the audit of ``config`` into ``out``; write ``report.json``, ``report.html`` and the PNGs;
    return the report. ``after_cell`` is called after each cell is recorded."""
    start = time.perf_counter()
    setup = build_setup(config)
    config = setup.config  # with the defenses the audit uses for this model (a BatchNorm model's DP)
    out = Path(out)
    results = ResultsDir(out, {"kind": "audit", **config.to_dict()})
    try:
        reasons, random, mechanisms = defense_reasons(setup)
        cells = plan(config, setup.resolved.model, setup.info, setup.public, setup.digest, reasons, random,
                     mechanisms)
        runnable = [c for c in cells if not c.reason]
        bounded_by = bounds(config.defenses, config)
        settled: dict[str, dict] = {}  # cells skipped because their answer is settled (recomputed on resume)
        with tqdm(total=len(runnable), desc="audit", disable=not progress) as bar:
            for cell in runnable:
                bar.set_postfix_str(cell.label)
                if cell.key not in results:
                    skipped = settle(cell, cells, {**results.finished(), **settled}, bounded_by)
                    if skipped is not None:
                        settled[cell.key] = skipped
                        bar.update(1)
                        continue
                    results.add(cell.key, {"kind": cell.kind, "digest": cell.digest, **run_cell(setup, cell, out)})
                    if after_cell is not None:
                        after_cell(cell)
                bar.update(1)
        return write_report(results, setup, cells, seconds=time.perf_counter() - start, settled=settled)
    finally:
        results.close()
