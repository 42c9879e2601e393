"""The audit's three kinds of cell, each a pure function of the :class:`Setup` and the cell, its randomness from
the cell's own seed (set by :func:`fedleak.audit.run.run_cell`):

- leak: one federation round in which the server runs an attack on clients behind a defense, scored by
  :class:`fedleak.cases.Audit` against the clients' true data (SSIM/PSNR/ASR of gradient inversion, paper 001
  §5.2; exact recall of analytic extraction, paper 002 §8.1);
- utility: a short FedAvg run of clients that train with a defense (paper 001 §5.1 utility protocol, shortened),
  and the DP epsilon it spent (Opacus RDP accountant);
- detect: the project's first-contact detector chain (:data:`fedleak.detection.FIRST_CONTACT`) on a manipulated
  model, or on the honest one, with a batch of the client's own data.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.base import Knowledge, LocalTraining
from fedleak.audit.config import NONE, AuditConfig, protocol_options, slug
from fedleak.audit.grids import save_grid, text_grid
from fedleak.audit.inputs import ResolvedModel
from fedleak.audit.plan import Cell
from fedleak.cases import Audit, ThreatModel
from fedleak.data import TensorDataset
from fedleak.defenses import defend
from fedleak.defenses.dp import dp_epsilon
from fedleak.detection import FIRST_CONTACT, first_contact_chain
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.text import text_scores
from fedleak.registry import parse_options

UTILITY_BATCH, UTILITY_LR = 32, 2e-3  # the demo's FedAvg recipe
DETECTION_SAMPLES = 32
ROUND_TEST = 64  # test samples of an attacked round (its accuracy is not the point)
DELTA = 1e-5


@dataclass
class Setup:
    """What every cell of an audit shares: the data, the model as the server holds it, its input range, the
    server's public data (the first test samples), the digest of the inputs, the data spec read (``data``: the
    config's, or its next-token form for a language model) and what the report must say about such choices."""

    config: AuditConfig
    train: TensorDataset
    test: TensorDataset
    resolved: ResolvedModel
    input_range: tuple[float, float]
    public: torch.Tensor = field(repr=False, default=None)
    digest: str = ""
    data: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def info(self):
        return self.train.info

    def fresh_model(self) -> nn.Module:
        return copy.deepcopy(self.resolved.model)

    def defended(self, defense: str) -> tuple[nn.Module, object, tuple, Knowledge]:
        """The model, gradient function and mods of ``defense`` ("none": undefended), and what the server knows
        (paper 001 §4.4: the defenses and the DP parameters). A ``ValueError`` when the defense cannot be placed."""
        defended = defend(self.fresh_model(), "" if defense == NONE else defense, model_name=self.resolved.name,
                          input_shape=self.info.input_shape)
        knowledge = Knowledge(self.info.input_shape, self.input_range, **defended.disclosed(),
                              local_training=local_training(self.config))
        return defended.model.to(self.config.device), defended.gradient_fn, defended.mods, knowledge


def local_training(config: AuditConfig) -> LocalTraining | None:
    """The clients' FedAvg recipe the server set up (what FedAvg inversion simulates and what reads a FedAvg
    update as a gradient); ``None`` under FedSGD."""
    fields = protocol_options(config.protocol)
    if fields["algorithm"] != "fedavg":
        return None
    return LocalTraining(fields["lr"], config.batch_size, steps=fields["local_steps"])


def federation_config(config: AuditConfig, clients: int, rounds: int = 1, **changes) -> FLConfig:
    return FLConfig(**{"num_clients": clients, "rounds": rounds, "batch_size": config.batch_size,
                       "seed": config.seed, "device": config.device, **protocol_options(config.protocol),
                       **changes})


def leak_cell(setup: Setup, cell: Cell, out: Path) -> dict:
    """One federation round in which the server runs the cell's attack on clients behind its defense; the audit's
    scores, the reconstructions beside the originals in a grid (images)."""
    config = setup.config
    model, gradient_fn, mods, knowledge = setup.defended(cell.defense)
    fl = federation_config(config, config.clients_per_round)
    threat = ThreatModel(server=config.threat, observes="secure_aggregate" if config.secure_aggregation else "updates",
                         protocol=fl.algorithm)
    audit = Audit(ATTACKS.build(cell.attack, **cell.options), threat, knowledge=knowledge, public=setup.public,
                  seed=config.seed, device=config.device)
    test = setup.test.subset(torch.arange(min(ROUND_TEST, len(setup.test))))
    server = build_federation(FederationSpec(), fl, gradient_fn=gradient_fn, mods=mods, audit=audit, model=model,
                              datasets=(setup.train, test), progress=False)
    start = time.perf_counter()
    try:
        server.run()
    except KeyError:  # a model with an inserted layer (an imprint): the updates, already audited, do not aggregate
        if not audit.records:
            raise
    attacked = [r for r in audit.records if r.status == "attacked"]
    summary = {k: v for k, v in audit.summary().items() if k not in ("attack", "threat_model")}
    result = {"status": "attacked" if attacked else "nothing observed", **summary,
              "seconds": time.perf_counter() - start}
    if attacked and all("leaked" in r.scores for r in attacked):
        leaked, true = sum(r.scores["leaked"] for r in attacked), sum(r.scores["true_points"] for r in attacked)
        result.update(leaked=leaked, true_points=true, recall=leaked / max(1, true))
    pairs = [(r.truth[0], r.reconstruction.inputs) for r in attacked if r.truth is not None]
    if setup.info.kind == "text":
        result.update(text_result(setup, [(t, r.reconstruction.inputs[r.reconstruction.declared])
                                           for r in attacked if r.truth is not None for t in (r.truth[0],)
                                           if not t.is_floating_point() and t.dim() == 2]))
        return result
    grid = out / "grids" / f"{slug(cell.attack)}__{slug(cell.defense)}.png"
    if pairs and save_grid(pairs, grid, paired=any(r.reconstruction.paired for r in attacked)):
        result["grid"] = grid.name
    return result


def text_result(setup: Setup, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Text measures of token sequences recovered (DAGER, Petrov et al. 2024 §7: exact, ROUGE-1/2, token recall;
    :func:`fedleak.metrics.text.text_scores`, means over the victims) and the sentences, each original beside its
    recovered partner (:func:`fedleak.audit.grids.text_grid`); nothing when no pair holds sequences of one shape."""
    pairs = [(t, r) for t, r in pairs if r.dim() == 2 and r.shape[1:] == t.shape[1:] and not r.is_floating_point()]
    if not pairs:
        return {}
    scores = [text_scores(r, t) for t, r in pairs]
    result = {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
    return {**{k if k != "exact" else "exact_sequences": v for k, v in result.items()},
            "texts": text_grid(pairs, text_decoder(setup))}


def text_decoder(setup: Setup):
    """Token ids -> text: the local tokenizer of ``fortunes_lm`` (:mod:`fedleak.data.text_tokenizer`), else the
    data's vocabulary joined by spaces, else the ids."""
    name, *parts = setup.data.split(":") if setup.data else (setup.info.name,)
    if name == "fortunes_lm":
        from fedleak.data.text_tokenizer import local_tokenizer

        vocab_size = parse_options(parts, "--data").get("vocab_size", 2000)
        tokenizer = local_tokenizer("fortunes", root=setup.config.root, vocab_size=vocab_size)
        return lambda ids: tokenizer.decode(ids).strip()
    vocab = getattr(setup.info, "vocab", None)
    if vocab:
        return lambda ids: " ".join(vocab[i] if 0 <= i < len(vocab) else str(i) for i in ids)
    return lambda ids: " ".join(str(i) for i in ids)


def utility_cell(setup: Setup, cell: Cell) -> dict:
    """A short FedAvg run (the demo's recipe) of clients that train with the cell's defense: its final test
    accuracy, and the DP epsilon spent (Opacus RDP accountant) when the defense includes DP-SGD."""
    config = setup.config
    model, gradient_fn, mods, knowledge = setup.defended(cell.defense)
    fl = FLConfig(algorithm="fedavg", num_clients=config.utility_clients, rounds=config.utility_rounds,
                  batch_size=UTILITY_BATCH, lr=UTILITY_LR, seed=config.seed, device=config.device)
    train, limit = setup.train, config.utility_samples
    if limit is not None and len(train) > limit:  # a seeded draw, the same for every defense
        train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))[:limit])
    start = time.perf_counter()
    server = build_federation(FederationSpec(), fl, gradient_fn=gradient_fn, mods=mods, model=model,
                              datasets=(train, setup.test), progress=False)
    history = server.run()
    result = {"status": "trained", "accuracy": history.final_accuracy, "rounds": len(history.rounds),
              "chance": 1.0 / setup.info.num_classes, "seconds": time.perf_counter() - start}
    if knowledge.dp_sigma is not None:
        samples = min(len(c.data.train) for c in server.clients)
        steps = len(history.rounds) * math.ceil(samples / UTILITY_BATCH)
        result["epsilon"] = dp_epsilon(knowledge.dp_sigma, min(1.0, UTILITY_BATCH / samples), steps, DELTA)
    return result


def received_model(setup: Setup, cell: Cell) -> nn.Module:
    """The model client 0 receives in the audited round: the honest model, or the cell's manipulation of it."""
    honest = setup.fresh_model()  # a copy: a check's forward must not move the shared model's statistics
    if cell.attack is None:
        return honest
    config = setup.config
    context = AttackContext(setup.info.input_shape, setup.info.num_classes, 1,
                            tuple(range(config.clients_per_round)), setup.public, config.seed, config.device)
    sent, _ = ATTACKS.build(cell.attack, **cell.options).prepare(honest, context)
    return sent[0] if isinstance(sent, dict) else sent


def detection_cell(setup: Setup, cell: Cell) -> dict:
    """The first-contact chain's verdicts (every detector, none stopping the others) on the model the cell's
    server sends, with :data:`DETECTION_SAMPLES` of the client's own training samples."""
    config = setup.config
    received = received_model(setup, cell)
    chain = first_contact_chain(copy.deepcopy(setup.resolved.model), samples=DETECTION_SAMPLES, refuse=False)
    index = torch.randperm(len(setup.train), generator=torch.Generator().manual_seed(config.seed))[:DETECTION_SAMPLES]
    batch = (setup.train.inputs(index).to(config.device), setup.train.y[index].to(config.device))
    start = time.perf_counter()
    verdicts = chain.check(received, batch, round=1, device=config.device, remember=False)
    columns = {v.detector: {"flagged": bool(v.flagged), "score": float(v.score), "threshold": float(v.threshold),
                            "reason": v.reason()} for v in verdicts}
    return {"status": "checked", "model": cell.attack or "honest", "detectors": columns,
            "flagged_by": [n for n in FIRST_CONTACT if columns.get(n, {}).get("flagged")],
            "seconds": time.perf_counter() - start}


RUNNERS = {"leak": lambda setup, cell, out: leak_cell(setup, cell, out),
           "utility": lambda setup, cell, out: utility_cell(setup, cell),
           "detect": lambda setup, cell, out: detection_cell(setup, cell)}
