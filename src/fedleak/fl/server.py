"""The FL server: picks clients, decides which model each receives, sees every update, aggregates.

An attack is one object, a :class:`fedleak.cases.Audit`: it decides what each client receives
(``audit.dispatch``; every other client gets the global model) and receives the round's updates, with each
client's true batch handed over beside them for scoring only (``audit.observe``). The client trains a copy, so
the model as sent stays as it was.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.fl.client import Client, ClientUpdate, ModelRefused, copy_model, floating_state
from fedleak.fl.config import FLConfig
from fedleak.fl.reply_check import ReplyLimits, ReplyRefused, check_update
from fedleak.fl.robust import RobustAggregation
from fedleak.fl.training import evaluate


@dataclass
class RoundRecord:
    round: int
    test_loss: float | None
    test_accuracy: float | None
    val_loss: float | None
    clients: list[int]
    refused: dict[int, str] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)  # replies the server refused to aggregate, and why
    seconds: float = 0.0
    metrics: dict[int, dict] = field(default_factory=dict)  # each update's metrics, by client


@dataclass
class History:
    rounds: list[RoundRecord] = field(default_factory=list)
    stopped_early: bool = False
    best_round: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def final_accuracy(self) -> float | None:
        return self.rounds[-1].test_accuracy if self.rounds else None


def weighted_mean(updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
    """The ``num_examples``-weighted mean of the updates' tensors: what FedAvg/FedSGD aggregate, and all that a
    server behind secure aggregation sees of a round."""
    total = float(sum(u.num_examples for u in updates))
    return {key: sum(u.tensors[key] * (u.num_examples / total) for u in updates) for key in updates[0].tensors}


def aggregate(global_model: nn.Module, updates: Sequence[ClientUpdate], server_lr: float = 1.0,
              robust: RobustAggregation | None = None) -> None:
    """FedAvg / FedSGD aggregation in place: the ``num_examples``-weighted mean of the updates (or the ``robust``
    rule's aggregate) is added to the global state (deltas) or taken as an SGD step of size ``server_lr``
    (gradients)."""
    if not updates:
        return
    state = global_model.state_dict()
    unknown = [key for key in updates[0].tensors if key not in state]
    if unknown:
        raise KeyError(f"update has an entry {unknown[0]!r} that the global model lacks")
    with torch.no_grad():
        means = weighted_mean(updates) if robust is None else robust.mean(updates)
        for key, mean in means.items():
            mean = mean.to(state[key].device)
            if updates[0].kind == "gradient":
                state[key].sub_(server_lr * mean)
            else:
                state[key].add_(mean)


def check_model_input(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Fail before training when the data's sample shape is not what the model was built for."""
    expected = getattr(model, "input_shape", None)
    if expected is not None and tuple(expected) != tuple(input_shape):
        raise ValueError(
            f"model expects inputs of shape {tuple(expected)} but the data has samples of shape {tuple(input_shape)}"
        )


def expected_entries(model: nn.Module, kind: str) -> dict[str, torch.Tensor]:
    """The entries a client's update of ``kind`` holds for the model it was sent: the gradient of every trainable
    parameter (FedSGD), or the change of every floating-point state entry (FedAvg)."""
    if kind == "gradient":
        return {name: p for name, p in model.named_parameters() if p.requires_grad}
    return floating_state(model)


def max_examples(config: FLConfig, dataset_size: int) -> int:
    """The most examples a client of ``dataset_size`` samples can train on in one round under ``config``: one batch
    (FedSGD), ``local_steps`` batches, or ``local_epochs`` passes over its data."""
    if config.algorithm == "fedsgd":
        return min(config.batch_size, dataset_size)
    if config.local_steps is not None:
        return config.local_steps * config.batch_size
    return config.local_epochs * dataset_size


class Server:
    """Runs ``config.rounds`` rounds of FedAvg or FedSGD over ``clients``. Every update is checked before
    aggregation (:mod:`fedleak.fl.reply_check`, bounded by ``limits`` and by what ``config`` lets each client
    train on); a failing one is dropped with its reason (``RoundRecord.dropped``, and a "dropped reply" cell of
    the audit). ``robust`` switches on norm clipping and/or the trimmed mean (:mod:`fedleak.fl.robust`)."""

    def __init__(
        self,
        model: nn.Module,
        clients: Sequence[Client],
        config: FLConfig,
        test_data=None,
        *,
        audit=None,
        progress: bool = True,
        limits: ReplyLimits = ReplyLimits(),
        robust: RobustAggregation | None = None,
    ):
        if not clients:
            raise ValueError("a server needs at least one client")
        sample_data = test_data if test_data is not None else clients[0].data.train
        check_model_input(model, sample_data.info.input_shape)
        self.model = model.to(config.device)
        self.clients, self.config, self.test_data = list(clients), config, test_data
        if audit is not None and audit.threat_model.protocol != config.algorithm:
            raise ValueError(f"the audit's threat model expects {audit.threat_model.protocol} but the federation "
                             f"runs {config.algorithm}")
        self.audit, self.progress = audit, progress
        self.limits, self.robust = limits, robust
        self._rng = torch.Generator().manual_seed(config.seed)

    def select(self) -> list[Client]:
        count = max(1, round(self.config.fraction * len(self.clients)))
        order = torch.randperm(len(self.clients), generator=self._rng)[:count]
        return [self.clients[i] for i in sorted(order.tolist())]

    def run_round(self, round: int) -> RoundRecord:
        start = time.perf_counter()
        selected = self.select()
        sent = {} if self.audit is None else self.audit.dispatch(round, [c.client_id for c in selected], self.model)
        updates, truth, refused, dropped = [], {}, {}, {}
        for client in selected:
            received = sent.get(client.client_id, self.model)
            try:
                update = client.handle(copy_model(received), round)
            except ModelRefused as refusal:
                refused[client.client_id] = f"{refusal.detector}: {refusal.reason}"
                continue
            try:
                self.check(update, client, received)
            except ReplyRefused as error:
                dropped[client.client_id] = str(error)
                continue
            updates.append(update)
            truth[client.client_id] = client.truth
        if self.audit is not None:
            for client_id, reason in dropped.items():
                self.audit.note(round, client_id, "dropped reply", reason)
            self.audit.observe(round, updates, truth, refused)
        aggregate(self.model, updates, self.config.server_lr, self.robust)
        test_loss = test_acc = None
        if self.test_data is not None:
            test_loss, test_acc = evaluate(self.model, self.test_data, device=self.config.device)
        val_loss = None
        if self.config.patience is not None:
            val_loss = sum(c.validation_loss(self.model) for c in self.clients) / len(self.clients)
        return RoundRecord(round, test_loss, test_acc, val_loss, [c.client_id for c in selected], refused,
                           dropped, time.perf_counter() - start, {u.client_id: u.metrics for u in updates})

    def check(self, update: ClientUpdate, client: Client, received: nn.Module) -> None:
        """Raise :class:`ReplyRefused` unless ``update`` is what ``client`` can have sent for the model it
        ``received``: its own id and the round's kind, the model's entries, finite values within the norm bound,
        and a ``num_examples`` it can have trained on (module :mod:`fedleak.fl.reply_check`)."""
        kind = "gradient" if self.config.algorithm == "fedsgd" else "delta"
        if not isinstance(update, ClientUpdate):
            raise ReplyRefused(f"client {client.client_id} sent a {type(update).__name__}, not a ClientUpdate")
        if update.client_id != client.client_id or update.kind != kind:
            raise ReplyRefused(f"client {client.client_id} sent an update of kind {update.kind!r} from client "
                               f"{update.client_id!r}; this {self.config.algorithm} round expects a {kind} of its own")
        check_update(update.tensors, expected_entries(received, kind), update.num_examples, self.limits,
                     max_examples=max_examples(self.config, len(client.data.train)),
                     what=f"client {client.client_id}'s {kind}")

    def run(self, on_round: Callable[[RoundRecord], None] | None = None, *,
            before_round: Callable[[int, "Server"], None] | None = None) -> History:
        """All rounds, with early stopping on the mean client validation loss when ``config.patience`` is set.
        ``before_round(round, server)`` runs before each round (on the model the round will send);
        ``on_round(record)`` after it."""
        history, best, since_best = History(), float("inf"), 0
        bar = tqdm(range(1, self.config.rounds + 1), desc="FL rounds", disable=not self.progress)
        for r in bar:
            if before_round is not None:
                before_round(r, self)
            record = self.run_round(r)
            history.rounds.append(record)
            if on_round is not None:
                on_round(record)
            if record.test_accuracy is not None:
                bar.set_postfix(acc=f"{record.test_accuracy:.3f}")
            if record.val_loss is not None:
                if record.val_loss < best:
                    best, since_best, history.best_round = record.val_loss, 0, r
                else:
                    since_best += 1
                    if since_best >= self.config.patience:
                        history.stopped_early = True
                        break
        return history
