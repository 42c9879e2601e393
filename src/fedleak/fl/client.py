"""An FL client: receives a model, may inspect it (mods), trains locally, may transform its update, sends it.

Mods have the shape of Flower's client mods: ``mod(model, client, call_next) -> ClientUpdate``. A detector
looks at the received model before calling ``call_next`` and raises :class:`ModelRefused`; an update defense
calls ``call_next`` and rewrites the tensors of the update it returns.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from fedleak import seeds
from fedleak.fl.config import FLConfig
from fedleak.fl.training import GradientFn, apply_gradients, batch_gradients, evaluate, make_optimizer


@dataclass
class ClientUpdate:
    """What a client sends: ``kind`` is "gradient" (FedSGD: the mean gradient of one batch) or "delta"
    (FedAvg: trained minus received values of every floating-point state entry)."""

    client_id: int
    round: int
    kind: str
    tensors: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict = field(default_factory=dict)


class ModelRefused(Exception):
    """A client refuses to train on the model it received; names the detector and why."""

    def __init__(self, client_id: int, detector: str, reason: str, verdict=None):
        super().__init__(f"client {client_id} refused the model: {detector}: {reason}")
        self.client_id, self.detector, self.reason, self.verdict = client_id, detector, reason, verdict


CallNext = Callable[[nn.Module], ClientUpdate]
ClientMod = Callable[[nn.Module, "Client", CallNext], ClientUpdate]


def floating_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point entries of a state dict (parameters and float buffers such as BN statistics)."""
    return {k: v for k, v in model.state_dict().items() if v.is_floating_point()}


class Client:
    """One client with its local train/validation data and its local training recipe. After each round
    ``truth`` holds the samples it trained on (the true data beside its update, read only by an audit's scorer)."""

    def __init__(
        self,
        client_id: int,
        data,
        config: FLConfig,
        *,
        gradient_fn: GradientFn = batch_gradients,
        mods: tuple[ClientMod, ...] = (),
    ):
        if len(data.train) == 0:
            raise ValueError(f"client {client_id} has no training data")
        self.client_id, self.data, self.config = client_id, data, config
        self.gradient_fn, self.mods = gradient_fn, tuple(mods)
        self.round = 0
        self.context: dict = {}  # state a mod keeps across rounds (e.g. a detector's calibration)
        self.truth: tuple[torch.Tensor, torch.Tensor] | None = None  # the samples of the last round, for scoring

    def _generator(self) -> torch.Generator:
        return seeds.generator(self.config.seed, self.client_id, self.round)

    def handle(self, model: nn.Module, round: int) -> ClientUpdate:
        """Run the mods around local training on the received ``model`` (which the client may modify)."""
        self.round, self.truth = round, None
        call_next: CallNext = self.fit
        for mod in reversed(self.mods):
            call_next = (lambda m, nxt=call_next, md=mod: md(m, self, nxt))
        return call_next(model)

    def batches(self, batch_size: int, generator: torch.Generator):
        """Shuffled (x, y) batches of the local training data for one epoch, on the configured device."""
        order = torch.randperm(len(self.data.train), generator=generator)
        device = self.config.device
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.data.train.inputs(idx).to(device), self.data.train.y[idx].to(device)

    def _local_batches(self, generator: torch.Generator):
        """Batches for ``local_epochs`` epochs, or endlessly when ``local_steps`` bounds the training."""
        epoch = 0
        while self.config.local_steps is not None or epoch < self.config.local_epochs:
            yield from self.batches(self.config.batch_size, generator)
            epoch += 1

    def fit(self, model: nn.Module) -> ClientUpdate:
        cfg, gen = self.config, self._generator()
        model.train()
        if cfg.algorithm == "fedsgd":
            x, y = next(self.batches(cfg.batch_size, gen))
            self.truth = (x, y)
            grads = self.gradient_fn(model, x, y)
            return ClientUpdate(self.client_id, self.round, "gradient", grads, len(y))
        before = {k: v.clone() for k, v in floating_state(model).items()}
        optimizer = make_optimizer(cfg.optimizer, [p for p in model.parameters() if p.requires_grad], cfg.lr)
        steps, seen, batches = 0, 0, []
        for x, y in itertools.islice(self._local_batches(gen), cfg.local_steps):
            apply_gradients(model, self.gradient_fn(model, x, y))
            optimizer.step()
            steps, seen = steps + 1, seen + len(y)
            batches.append((x, y))
        self.truth = (torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
        delta = {k: (v.detach() - before[k]) for k, v in floating_state(model).items()}
        return ClientUpdate(self.client_id, self.round, "delta", delta, seen, {"local_steps": steps})

    def trained_samples(self, round: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples :meth:`fit` trains on in ``round`` (the same seeded draws, replayed without training): what
        an update defense that runs outside the client (a Flower mod) checks the update against."""
        cfg, generator = self.config, seeds.generator(self.config.seed, self.client_id, round)
        if cfg.algorithm == "fedsgd":
            return next(self.batches(cfg.batch_size, generator))
        batches = list(itertools.islice(self._local_batches(generator), cfg.local_steps))
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    def validation_loss(self, model: nn.Module) -> float:
        if len(self.data.val) == 0:
            raise ValueError(f"client {self.client_id} has no validation data")
        return evaluate(model, self.data.val, device=self.config.device)[0]


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
