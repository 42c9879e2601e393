"""The server side of one attack under one threat model, as one object that every engine runs: ``fl.Server`` in
simulation and :class:`fedleak.flower.AuditStrategy` in a Flower federation.

Per attacked round: :meth:`Audit.dispatch` asks the attack what to send (one model for every target, or one per
client: model inconsistency) and keeps its secret; :meth:`Audit.observe` receives the round's updates, keeps what
the threat model lets the server see (each target's update, or only the secure aggregate of all answering
clients), reconstructs, scores each observed update against the true data of the clients behind it (which the
engine hands over beside the updates, for scoring only), and writes one cell per observed update to
``audit.jsonl`` with the reconstruction beside it (safetensors, plus a PNG for images).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from safetensors.torch import save_file

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import (Knowledge, NOTHING_TO_RECONSTRUCT, Attack, AttackContext, Observed, Reconstruction,
                                  nothing_to_reconstruct, stack_updates, zero_rows)
from fedleak.cases.scoring import score
from fedleak.cases.threat_model import ThreatModel
from fedleak.checks import NonFiniteUpdate, check_finite
from fedleak.fl.client import ClientUpdate
from fedleak.fl.server import weighted_mean
from fedleak.report import ResultsDir
from fedleak.report.plots import image_grid
from fedleak.seeds import derived_seed

CELLS = "audit.jsonl"
AGGREGATE = -1  # the source of the secure aggregate: no single client

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class AuditRecord:
    """One observed update of an attacked round: its ``source`` client (``AGGREGATE`` for the secure aggregate of
    ``clients``), ``status`` ("attacked", "refused", "refused honest model", "unusable update"), the
    ``reconstruction`` and its ``scores`` against the true data; ``observed`` is what the attack read, ``truth`` the
    true samples it was scored against (both kept in memory only)."""

    round: int
    source: int
    clients: tuple[int, ...]
    status: str
    reconstruction: Reconstruction | None = None
    scores: dict = field(default_factory=dict)
    observed: Observed | None = None
    truth: Batch | None = None
    reason: str = ""
    seconds: float = 0.0

    def cell(self) -> dict:
        cell = {"round": self.round, "client": self.source, "clients": list(self.clients), "status": self.status}
        if self.reason:
            cell["reason"] = self.reason
        return {**cell, **self.scores, "seconds": self.seconds}


class Audit:
    """``attack`` (an :class:`fedleak.attacks.base.Attack`, or a name of :data:`fedleak.attacks.ATTACKS` built with
    ``options``) run under ``threat_model``; ``knowledge``: what the server knows besides the updates (input shape
    and range, the client's defenses; default: the model's input shape); ``public``: data of the server's own (e.g.
    for imprint bins); ``seed``: the run's seed, from which each round's context seed is derived (an attack's own
    ``seed`` option, where it has one, overrides it); ``reference``: data to score against where a client's true data is not handed over (a
    Flower federation); ``out``: results folder (``None``: keep the records in memory only), whose earlier cells of
    the same config a rerun keeps (``resume``) or clears."""

    def __init__(self, attack: Attack | str, threat_model: ThreatModel = ThreatModel(), *,
                 knowledge: Knowledge | None = None, public: torch.Tensor | None = None,
                 reference: torch.Tensor | None = None, out: str | Path | None = None, seed: int = 0,
                 device: str | torch.device = "cpu", config: Mapping | None = None, resume: bool = True,
                 **options):
        self.attack = ATTACKS.build(attack, **options) if isinstance(attack, str) else attack
        if options and not isinstance(attack, str):
            raise ValueError("attack options go with an attack name, not with a built attack")
        self.threat_model, self.knowledge, self.public = threat_model, knowledge, public
        self.reference, self.seed, self.device = reference, seed, device
        self.records: list[AuditRecord] = []
        # round -> (secret, the model each selected client received, the targets, those sent another model)
        self._pending: dict[int, tuple[Any, dict[int, nn.Module], tuple[int, ...], set[int]]] = {}
        self.results = None if out is None else ResultsDir(out, {
            "attack": getattr(self.attack, "name", type(self.attack).__name__), "options": dict(options),
            "threat_model": threat_model.to_dict(), "seed": seed, **(config or {})}, cells=CELLS, resume=resume)

    @property
    def name(self) -> str:
        return getattr(self.attack, "name", type(self.attack).__name__)

    def _knowledge(self, model: nn.Module) -> Knowledge:
        if self.knowledge is None:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ValueError("pass knowledge= (the model does not record its input_shape)")
            self.knowledge = Knowledge(input_shape=tuple(shape))
        return self.knowledge

    def dispatch(self, round: int, clients: Sequence[int], model: nn.Module) -> dict[int, nn.Module]:
        """The models the server sends in ``round`` to the ``clients`` it selected, for those that do not receive
        ``model`` itself (empty when the round is not attacked)."""
        targets = tuple(self.threat_model.targets(round, list(clients)))
        if not targets:
            return {}
        context = AttackContext(self._knowledge(model).input_shape, getattr(model, "num_classes", None), round,
                                targets, self.public, derived_seed(self.seed, round=round), self.device)
        sent, secret = self.attack.prepare(model, context)
        if isinstance(sent, Mapping):
            stray = sorted(set(sent) - set(clients))
            if stray:
                raise ValueError(f"attack {self.name!r} sent models to clients {stray} not selected in round {round}")
            models = dict(sent)
        else:
            models = {c: sent for c in targets}
        if self.threat_model.server == "honest" and any(m is not model for m in models.values()):
            raise ValueError(f"attack {self.name!r} changes the model it sends; an honest server cannot run it "
                             f"(use ThreatModel(server='malicious'))")
        changed = {c for c, m in models.items() if m is not model}
        # the server updates its global model in place after the round: the record keeps the model as it was sent
        as_sent = copy.deepcopy(model)
        self._pending[round] = (secret, {c: models[c] if c in changed else as_sent for c in clients}, targets,
                                changed)
        return {c: m for c, m in models.items() if m is not model}

    def observe(self, round: int, updates: Sequence[ClientUpdate], truth: Mapping[int, Batch] | None = None,
                refused: Mapping[int, str] | None = None) -> list[AuditRecord]:
        """Take the round's ``updates`` (every answering client's), keep what the threat model lets the server see,
        reconstruct, score against ``truth`` (client -> its true batch, for scoring only) and record, with the
        clients that ``refused`` the model they were sent (in any round: a refused honest model is a false
        alarm)."""
        truth, refused = truth or {}, refused or {}
        secret, models, targets, changed = self._pending.pop(round, (None, {}, (), set()))
        records = [AuditRecord(round, c, (c,), "refused" if c in changed else "refused honest model", reason=reason)
                   for c, reason in sorted(refused.items())]
        if not targets:
            for record in records:
                self._record(record)
            return records
        by_client = {u.client_id: u for u in updates}
        if self.threat_model.observes == "secure_aggregate":
            answering = tuple(sorted(by_client))
            groups = [(AGGREGATE, answering)] if answering else []
        else:
            groups = [(c, (c,)) for c in targets if c in by_client]
        if groups:
            records += self._reconstruct(round, groups, by_client, models, secret, truth)
        for record in records:
            self._record(record)
        return records

    def observe_aggregate(self, round: int, aggregate: ClientUpdate, clients: Sequence[int],
                          truth: Mapping[int, Batch] | None = None, refused: Mapping[int, str] | None = None
                          ) -> list[AuditRecord]:
        """Like :meth:`observe`, for an engine that computes the secure aggregate itself (Flower's SecAgg+ unmasks
        a clipped, quantised weighted sum): ``aggregate`` is the round's aggregate update over the answering
        ``clients``, reconstructed and scored against their ``truth``."""
        if self.threat_model.observes != "secure_aggregate":
            raise ValueError("observe_aggregate needs a threat model that observes the secure aggregate")
        truth, refused = truth or {}, refused or {}
        secret, models, targets, changed = self._pending.pop(round, (None, {}, (), set()))
        records = [AuditRecord(round, c, (c,), "refused" if c in changed else "refused honest model", reason=reason)
                   for c, reason in sorted(refused.items())]
        if targets and clients:
            group = [(AGGREGATE, tuple(sorted(clients)))]
            records += self._reconstruct(round, group, {}, models, secret, truth, aggregate=aggregate)
        for record in records:
            self._record(record)
        return records

    def _reconstruct(self, round: int, groups: list[tuple[int, tuple[int, ...]]], by_client: dict[int, ClientUpdate],
                     models: dict[int, nn.Module], secret: Any, truth: Mapping[int, Batch],
                     aggregate: ClientUpdate | None = None) -> list[AuditRecord]:
        rows, sent, usable, unusable = [], [], [], []
        for source, clients in groups:
            members = [aggregate] if aggregate is not None else [by_client[c] for c in clients]
            tensors = members[0].tensors if source != AGGREGATE or aggregate else weighted_mean(members)
            try:
                check_finite(tensors, "received update")
            except NonFiniteUpdate as error:  # recorded, never attacked: it would give noise that looks like data
                unusable.append(AuditRecord(round, source, clients, "unusable update", reason=str(error)))
                continue
            rows.append((tensors, sum(m.num_examples for m in members)))
            sent.append(models[clients[0]])
            usable.append((source, clients))
        if rows:  # an all-zero update is reported as such, never handed to the attack to "invert"
            zero = zero_rows(stack_updates([t for t, _ in rows])).tolist()
            for index in [i for i, z in enumerate(zero) if z]:
                source, clients = usable[index]
                empty = nothing_to_reconstruct(self._knowledge(sent[index]).input_shape, self.device)
                have = [truth[c] for c in clients if c in truth]
                true = (torch.cat([b[0] for b in have]), torch.cat([b[1] for b in have])) if have else None
                unusable.append(AuditRecord(round, source, clients, "attacked", empty, self._score(empty, true),
                                            None, true, reason=NOTHING_TO_RECONSTRUCT))
            keep = [i for i, z in enumerate(zero) if not z]
            rows, sent, usable = [rows[i] for i in keep], [sent[i] for i in keep], [usable[i] for i in keep]
        if not usable:
            return unusable
        groups = usable
        kind = aggregate.kind if aggregate is not None else by_client[groups[0][1][0]].kind
        sources = tuple(source for source, _ in groups)
        observed = Observed(stack_updates([t for t, _ in rows]), kind, sources, tuple(n for _, n in rows),
                            tuple(sent))
        start = time.perf_counter()
        reconstruction = self.attack.reconstruct(observed, secret, self._knowledge(sent[0]), device=self.device)
        seconds = time.perf_counter() - start
        records = []
        point_source = reconstruction.meta.get("source")
        for index, (source, clients) in enumerate(groups):
            own = reconstruction if point_source is None else reconstruction.select(point_source == index)
            have = [truth[c] for c in clients if c in truth]
            true = (torch.cat([b[0] for b in have]), torch.cat([b[1] for b in have])) if have else None
            records.append(AuditRecord(round, source, clients, "attacked", own, self._score(own, true), observed,
                                       true, seconds=seconds / len(groups)))
        return unusable + records

    def _score(self, reconstruction: Reconstruction, truth: Batch | None) -> dict:
        if truth is not None:
            return score(reconstruction, *truth, paired=reconstruction.paired and len(truth[0]) == 1)
        if self.reference is not None:
            return score(reconstruction, self.reference)
        return {"points": len(reconstruction), "declared": len(reconstruction.declared_points())}

    def note(self, round: int, client: int, status: str, reason: str) -> None:
        """Record a client of ``round`` whose reply the engine could not turn into an update, and why."""
        self._record(AuditRecord(round, client, (client,), status, reason=reason))

    def _record(self, record: AuditRecord) -> None:
        self.records.append(record)
        if self.results is None:
            return
        key = f"round-{record.round}-client-{record.source}"
        cell = {"attack": self.name, **record.cell()}
        if record.reconstruction is not None:
            folder = self.results.path / "reconstructions"
            folder.mkdir(exist_ok=True)
            save_file(reconstruction_tensors(record.reconstruction), str(folder / f"{key}.safetensors"))
            cell["file"] = f"reconstructions/{key}.safetensors"
            points = record.reconstruction.declared_points()
            if points.is_floating_point() and points.dim() == 4 and len(points):
                image_grid([points[:40]], folder / f"{key}.png", row_labels=[f"client {record.source}"])
        self.results.add(key, cell)

    def summary(self) -> dict:
        """Mean of every numeric score over the attacked records, and the records' statuses."""
        attacked = [r for r in self.records if r.status == "attacked"]
        keys = sorted({k for r in attacked for k, v in r.scores.items() if isinstance(v, (int, float))})
        means = {k: sum(r.scores[k] for r in attacked if k in r.scores) / max(1, sum(k in r.scores for r in attacked))
                 for k in keys}
        statuses: dict[str, int] = {}
        for r in self.records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        return {"attack": self.name, "threat_model": asdict(self.threat_model), "records": statuses, **means}


def reconstruction_tensors(reconstruction: Reconstruction) -> dict[str, torch.Tensor]:
    """A reconstruction as named tensors (for safetensors): inputs, labels, declared and every meta entry."""
    tensors = {"inputs": reconstruction.inputs, "declared": reconstruction.declared}
    if reconstruction.labels is not None:
        tensors["labels"] = reconstruction.labels
    tensors.update({f"meta.{k}": v for k, v in reconstruction.meta.items()})
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

