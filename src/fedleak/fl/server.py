"""The FL server: picks clients, decides which model each receives, sees every update, aggregates.

The two hooks are what the malicious-server attacks use: ``dispatch(round, client_id, global_model)`` returns
the model a client receives (default: a copy of the global model; a dishonest server returns a manipulated
one) and every ``observer(round, client_id, sent_model, update)`` sees each update before aggregation, with
the model exactly as it was sent (the client trains a copy).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from fedleak.fl.client import Client, ClientUpdate, ModelRefused, copy_model
from fedleak.fl.config import FLConfig
from fedleak.fl.training import evaluate

Dispatch = Callable[[int, int, nn.Module], nn.Module]
Observer = Callable[[int, int, nn.Module, ClientUpdate], None]


@dataclass
class RoundRecord:
    round: int
    test_loss: float | None
    test_accuracy: float | None
    val_loss: float | None
    clients: list[int]
    refused: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0


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


def aggregate(global_model: nn.Module, updates: Sequence[ClientUpdate], server_lr: float = 1.0) -> None:
    """FedAvg / FedSGD aggregation in place: the ``num_examples``-weighted mean of the updates is added to the
    global state (deltas) or taken as an SGD step of size ``server_lr`` (gradients)."""
    if not updates:
        return
    total = float(sum(u.num_examples for u in updates))
    state = global_model.state_dict()
    with torch.no_grad():
        for key in updates[0].tensors:
            if key not in state:
                raise KeyError(f"update has an entry {key!r} that the global model lacks")
            mean = sum(u.tensors[key].to(state[key].device) * (u.num_examples / total) for u in updates)
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


class Server:
    """Runs ``config.rounds`` rounds of FedAvg or FedSGD over ``clients``."""

    def __init__(
        self,
        model: nn.Module,
        clients: Sequence[Client],
        config: FLConfig,
        test_data=None,
        *,
        dispatch: Dispatch | None = None,
        observers: Sequence[Observer] = (),
        progress: bool = True,
    ):
        if not clients:
            raise ValueError("a server needs at least one client")
        sample_data = test_data if test_data is not None else clients[0].data.train
        check_model_input(model, sample_data.info.input_shape)
        self.model = model.to(config.device)
        self.clients, self.config, self.test_data = list(clients), config, test_data
        self.dispatch = dispatch or (lambda round, client_id, global_model: copy_model(global_model))
        self.observers = list(observers)
        self.progress = progress
        self._rng = torch.Generator().manual_seed(config.seed)

    def select(self) -> list[Client]:
        count = max(1, round(self.config.fraction * len(self.clients)))
        order = torch.randperm(len(self.clients), generator=self._rng)[:count]
        return [self.clients[i] for i in sorted(order.tolist())]

    def run_round(self, round: int) -> RoundRecord:
        start = time.perf_counter()
        selected = self.select()
        updates, refused = [], {}
        for client in selected:
            sent = self.dispatch(round, client.client_id, self.model)
            try:
                update = client.handle(copy_model(sent), round)  # ``sent`` stays as sent, for observers
            except ModelRefused as refusal:
                refused[client.client_id] = f"{refusal.detector}: {refusal.reason}"
                continue
            for observe in self.observers:
                observe(round, client.client_id, sent, update)
            updates.append(update)
        aggregate(self.model, updates, self.config.server_lr)
        test_loss = test_acc = None
        if self.test_data is not None:
            test_loss, test_acc = evaluate(self.model, self.test_data, device=self.config.device)
        val_loss = None
        if self.config.patience is not None:
            val_loss = sum(c.validation_loss(self.model) for c in self.clients) / len(self.clients)
        return RoundRecord(round, test_loss, test_acc, val_loss, [c.client_id for c in selected], refused,
                           time.perf_counter() - start)

    def run(self, on_round: Callable[[RoundRecord], None] | None = None) -> History:
        """All rounds, with early stopping on the mean client validation loss when ``config.patience`` is set."""
        history, best, since_best = History(), float("inf"), 0
        bar = tqdm(range(1, self.config.rounds + 1), desc="FL rounds", disable=not self.progress)
        for r in bar:
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
