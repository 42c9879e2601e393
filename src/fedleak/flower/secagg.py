"""An audit through Flower's real SecAgg+ (Bell et al., CCS 2020): the server reads the *unmasked* aggregate that
``SecAggPlusWorkflow`` hands to its strategy, not a float mean simulated by fedleak.

Flower 1.42 ships SecAgg+ for its legacy layout only (``secaggplus_mod`` around a ``NumPyClient``-style
``ClientApp``, ``SecAggPlusWorkflow`` inside a ``LegacyContext`` on the server), so this module uses that layout;
the Message-API app of :mod:`fedleak.flower.app` is unchanged. What the protocol does to an update (Flower's
``secaggplus_mod``): each client clips every *parameter* (full weights, not deltas) to ``[-clipping_range,
clipping_range]``, multiplies it by its weight ``num_examples / max_weight`` (itself quantised to
``1 / quantization_range``), rounds it stochastically to ``quantization_range`` levels over the clipping range,
and masks it; the server unmasks the sum and divides by the total weight. The server still learns each client's
``num_examples`` (the legacy ``FitRes`` it receives beside the masked vector), which is what lets it subtract the
weighted mean of the models it sent and read the aggregate *update*.

:class:`SecAggAuditStrategy` is the legacy strategy: in ``configure_fit`` it asks a :class:`fedleak.cases.Audit`
(``observes="secure_aggregate"``) for each client's model (LOKI: its own kernels; model inconsistency: the
target's attack model, everyone else a silenced one) and in ``aggregate_fit`` it hands the unmasked aggregate to
:meth:`fedleak.cases.Audit.observe_aggregate`. :func:`server_app` runs one round per entry of a *plan*: ``None``
is Flower's plain float FedAvg (the mean the attacks were written against), a :class:`SecAggSettings` is SecAgg+
with those settings; every round starts from the same global model and the clients train with the same seed, so
the rounds differ only by the aggregation. A client that refuses its model (fedleak's detector chain, run before
SecAgg+ masks anything) raises, which SecAgg+ treats as a dropout: the round completes without it.
"""
from __future__ import annotations

import copy
import dataclasses
import timeit
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from flwr.server.strategy import FedAvg

from fedleak.cases import Audit
from fedleak.checks import CheckedConfig, checked, positive_field
from fedleak.fl.client import Client, ClientUpdate
from fedleak.flower.records import load_state
from fedleak.seeds import derived_seed

Batch = tuple[torch.Tensor, torch.Tensor]
ROUND_KEY = "server-round"  # the round the clients train as (the same in every round of a plan)
PLAN_KEY = "plan-round"  # the round of the plan (seeds SecAgg+'s stochastic rounding)


@dataclass(frozen=True)
class SecAggSettings(CheckedConfig):
    """The arguments of Flower's ``SecAggPlusWorkflow`` (its defaults, as in Flower's secure-aggregation
    example); ``num_shares`` and ``reconstruction_threshold`` as fractions of the sampled clients."""

    num_shares: float = 1.0
    reconstruction_threshold: float = 0.6
    max_weight: float = 1000.0
    clipping_range: float = positive_field(8.0)
    quantization_range: int = checked(4194304, low=2)
    modulus_range: int = 4294967296

    def __post_init__(self):
        super().__post_init__()
        if self.modulus_range <= self.quantization_range:
            raise ValueError(f"quantization_range must be below modulus_range, got {self.quantization_range} and "
                             f"{self.modulus_range}")

    def workflow(self):
        from flwr.server.workflow import SecAggPlusWorkflow

        return SecAggPlusWorkflow(self.num_shares, self.reconstruction_threshold, max_weight=self.max_weight,
                                  clipping_range=self.clipping_range, quantization_range=self.quantization_range,
                                  modulus_range=self.modulus_range)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def settings_plan(clipping_ranges: Sequence[float], quantization_ranges: Sequence[int]) -> list[tuple]:
    """One run's rounds as ``(label, settings or None, adapted)``: Flower's plain float mean, SecAgg+ at its
    defaults, each other clipping and quantisation range (the rest at the defaults), then the defaults and that
    sweep again with ``adapted`` set (the attacker rescales its manipulation to the settings it knows)."""
    default = SecAggSettings()
    sweep = [(f"clip={c:g}", dataclasses.replace(default, clipping_range=c)) for c in clipping_ranges
             if c != default.clipping_range]
    sweep += [(f"quant=2^{q.bit_length() - 1}", dataclasses.replace(default, quantization_range=q))
              for q in quantization_ranges if q != default.quantization_range]
    plan = [("mean", None, False), ("secagg", default, False)] + [(label, s, False) for label, s in sweep]
    return plan + [(f"{label}+adapted", s, True) for label, s in [("secagg", default)] + sweep]


def state_arrays(model: nn.Module) -> list[np.ndarray]:
    """The model's state as the legacy layout's list of arrays (state-dict order)."""
    return [v.detach().cpu().numpy() for v in model.state_dict().values()]


def arrays_state(arrays: Sequence[np.ndarray], architecture: nn.Module) -> dict[str, torch.Tensor]:
    """A list of received arrays as a state dict of ``architecture``: the count must match; each array's shape
    and dtype are checked by :func:`fedleak.flower.records.load_state`'s strict architecture check."""
    keys = list(architecture.state_dict())
    if len(arrays) != len(keys):
        raise ValueError(f"received {len(arrays)} arrays, the architecture has {len(keys)} state entries")
    state = {}
    for key, array in zip(keys, arrays):
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"array for {key!r} is not numeric (dtype {array.dtype})")
        state[key] = torch.from_numpy(array.copy())
    return state


class SecAggAuditStrategy(FedAvg):
    """A legacy Flower strategy (Flower's legacy ``FedAvg``) that samples all ``num_clients`` nodes, numbers them
    0..n-1 by node id (the audit's client ids: LOKI's slots), sends each the model the ``audit`` dispatches, and
    gives the audit the round's aggregate (module docstring). ``truth(partition)`` is the true batch of the
    client holding that data partition (scoring only; the clients report their partition id in their metrics).
    The global model stays ``model`` in every round (a plan compares aggregations, not training progress)."""

    def __init__(self, audit: Audit, model: nn.Module, num_clients: int, truth: Callable[[int], Batch], *,
                 train_round: int = 1):
        super().__init__(fraction_evaluate=0.0, min_evaluate_clients=0, min_fit_clients=num_clients,
                         min_available_clients=num_clients)
        self.audit, self.model, self.num_clients, self.truth = audit, model, num_clients, truth
        self.train_round = train_round
        self.sent: dict[int, dict[int, nn.Module]] = {}
        self.slots: dict[int, dict[int, int]] = {}
        self.failures: dict[int, int] = {}
        self.reasons: dict[int, list[str]] = {}
        self.partitions: dict[int, dict[int, int]] = {}  # round -> slot -> data partition (scoring only)

    def configure_fit(self, server_round, parameters, client_manager):
        from flwr.common import FitIns, ndarrays_to_parameters

        proxies = client_manager.sample(num_clients=self.num_clients, min_num_clients=self.num_clients)
        proxies = sorted(proxies, key=lambda proxy: proxy.node_id)
        slots = {proxy.node_id: slot for slot, proxy in enumerate(proxies)}
        models = self.audit.dispatch(server_round, list(slots.values()), self.model)
        sent = {slot: models.get(slot, self.model) for slot in slots.values()}
        self.sent[server_round], self.slots[server_round] = sent, slots
        config = {ROUND_KEY: self.train_round, PLAN_KEY: server_round}
        return [(proxy, FitIns(ndarrays_to_parameters(state_arrays(sent[slots[proxy.node_id]])), dict(config)))
                for proxy in proxies]

    def aggregate_fit(self, server_round, results, failures):
        from flwr.common import parameters_to_ndarrays

        sent, slots = self.sent.pop(server_round), self.slots.pop(server_round)
        # SecAgg+ dropouts (e.g. a client whose detector refused its model); Flower may list one failure twice
        self.failures[server_round] = len(slots) - len(results)
        self.reasons[server_round] = sorted({str(getattr(f, "args", [f])[0]) for f in failures})
        if not results:
            return None, {}
        weights = {slots[proxy.node_id]: int(fit.num_examples) for proxy, fit in results}
        total = sum(weights.values())
        # Under SecAgg+ every result carries the one unmasked aggregate; without it, each client's own model:
        # either way their weighted mean is the aggregate of the round.
        replies = [(weights[slots[proxy.node_id]] / total, parameters_to_ndarrays(fit.parameters))
                   for proxy, fit in results]  # each reply read once
        arrays = [sum(share * reply[i] for share, reply in replies) for i in range(len(self.model.state_dict()))]
        aggregate = arrays_state(arrays, self.model)
        keys = [k for k, v in self.model.state_dict().items() if v.is_floating_point()]
        states = {s: sent[s].state_dict() for s in weights}
        sent_mean = {k: sum(weights[s] / total * states[s][k].double() for s in weights) for k in keys}
        delta = {k: (aggregate[k].double() - sent_mean[k]).float() for k in keys}
        truth, partitions = {}, {}
        for proxy, fit in results:
            partition = int(fit.metrics["partition-id"])
            partitions[slots[proxy.node_id]] = partition
            truth[slots[proxy.node_id]] = self.truth(partition)
        self.partitions[server_round] = partitions
        clients = tuple(sorted(weights))
        self.audit.observe_aggregate(server_round, ClientUpdate(-1, server_round, "delta", delta, total), clients,
                                     truth)
        return None, {}  # the global model stays the honest one: every round of a plan starts from it


def secagg_client_fn(load_client: Callable[[int], tuple[nn.Module, Client]], *, seed: int = 0):
    """A legacy ``client_fn``: the node's partition -> ``(architecture, fedleak client)`` from ``load_client``;
    ``fit`` loads the received arrays strictly into the architecture, runs the client (its mods first: a
    detector's refusal raises before anything is masked) and returns its trained weights, ``num_examples`` and
    its partition id. SecAgg+'s stochastic rounding draws from numpy's global generator; it is seeded here from
    (``seed``, plan round, partition) so that a run is reproducible."""
    from flwr.client import NumPyClient

    class FedleakNumPyClient(NumPyClient):
        def __init__(self, partition: int):
            self.partition = partition
            self.architecture, self.client = load_client(partition)

        def fit(self, parameters, config):
            received = arrays_state(parameters, self.architecture)
            model = load_state(received, self.architecture, device=self.client.config.device)
            update: ClientUpdate = self.client.handle(model, int(config.get(ROUND_KEY, 1)))
            if update.kind != "delta":
                raise ValueError("SecAgg+ sums weights: the clients must run FedAvg (local steps), not FedSGD")
            trained = {k: received[k] + update.tensors[k].cpu() if k in update.tensors else received[k]
                       for k in received}
            np.random.seed(derived_seed(seed, client=self.partition, round=int(config.get(PLAN_KEY, 0))) % 2**32)
            return [v.numpy() for v in trained.values()], int(update.num_examples), {"partition-id": self.partition}

    def client_fn(context):
        return FedleakNumPyClient(int(context.node_config["partition-id"])).to_client()

    return client_fn


def secagg_client_app(load_client: Callable[[int], tuple[nn.Module, Client]], *, seed: int = 0):
    """The legacy ``ClientApp`` with Flower's ``secaggplus_mod`` (it answers the SecAgg+ stages and masks what
    the client returns; without SecAgg+ messages it passes them through)."""
    from flwr.client import ClientApp

    return ClientApp(client_fn=secagg_client_fn(load_client, seed=seed), mods=[secaggplus_when_asked])


def secaggplus_when_asked(message, context, call_next):
    """Flower's ``secaggplus_mod`` for the messages of a SecAgg+ round (they carry its config record); a plain
    train message (a round without SecAgg+) goes straight to the client, which ``secaggplus_mod`` would refuse."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS in message.content.config_records:
        return secaggplus_mod(message, context, call_next)
    return call_next(message, context)


@dataclass
class SecAggRound:
    """What one round of a plan gave: the audit's record of the attacked aggregate (``None`` when too few
    clients answered for SecAgg+ to unmask), the clients that answered and those SecAgg+ dropped, and why;
    ``partitions`` maps each answering client (the audit's client id) to its data partition."""

    record: object
    answered: int
    dropped: int
    reasons: list
    partitions: dict


def client_partitions(size: int, num_clients: int, per_client: int, seed: int) -> list[torch.Tensor]:
    """Client ``p``'s indices into data of ``size`` samples: the ``p``-th block of ``per_client`` of a seeded
    permutation (a client that trains one epoch of exactly its samples has its whole partition as its batch)."""
    needed = num_clients * per_client
    if size < needed:
        raise ValueError(f"{num_clients} clients x {per_client} samples need {needed} training samples; the data "
                         f"has {size}")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:needed]
    return list(order.view(num_clients, per_client))


def run_secagg(audit: Audit, model: nn.Module, train, parts: Sequence[torch.Tensor], fl, plan: Sequence,
               *, detect_partitions: Sequence[int] = (), detectors: Sequence[str] | None = None,
               cpus: int | None = None) -> list[SecAggRound]:
    """Run ``audit`` (``observes="secure_aggregate"``, one attacked round per entry of ``plan``: ``None`` or
    :class:`SecAggSettings`) in Flower's simulation engine over ``len(parts)`` clients, client ``p`` training
    ``fl`` (a FedAvg :class:`fedleak.fl.FLConfig`) on ``train.subset(parts[p])`` from ``model``; the partitions
    in ``detect_partitions`` run fedleak's first-contact chain (``detectors``, default
    :data:`fedleak.detection.first_contact.FIRST_CONTACT`) before training (a refusal is a SecAgg+ dropout).
    Returns one :class:`SecAggRound` per plan entry."""
    from fedleak.data import ClientData
    from fedleak.detection.first_contact import first_contact_chain
    from fedleak.detection.chain import detector_mod
    from fedleak.flower.simulation import simulate

    def load_client(partition: int):
        data = ClientData(train=train.subset(parts[partition]), val=train.subset(parts[partition][:0]))
        local = copy.deepcopy(model)
        chain = first_contact_chain(local, **({} if detectors is None else {"names": tuple(detectors)}))
        mods = (detector_mod(chain),) if partition in detect_partitions else ()
        return local, Client(partition, data, fl, mods=mods)

    def truth(partition: int):
        return train.inputs(parts[partition]), train.y[parts[partition]]

    strategy = SecAggAuditStrategy(audit, model, len(parts), truth)
    simulate(server_app(strategy, list(plan)), secagg_client_app(load_client, seed=fl.seed), len(parts),
             cpus=cpus, device=fl.device)
    rounds = []
    for round in range(1, len(plan) + 1):
        record = next((r for r in audit.records if r.round == round and r.status == "attacked"), None)
        rounds.append(SecAggRound(record, len(record.clients) if record else 0, strategy.failures.get(round, 0),
                                  strategy.reasons.get(round, []), strategy.partitions.get(round, {})))
    return rounds


def server_app(strategy: SecAggAuditStrategy, plan: Sequence[SecAggSettings | None]):
    """A legacy ``ServerApp`` running one round per entry of ``plan`` (``None``: Flower's plain FedAvg fit;
    settings: SecAgg+), each from the strategy's global model."""
    from flwr.common import ndarrays_to_parameters
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.compat.app_utils import start_update_client_manager_thread
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
    from flwr.server.workflow.default_workflows import default_fit_workflow
    from flwr.app import ConfigRecord

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=len(plan)), strategy=strategy)
        thread, stop, ready = start_update_client_manager_thread(grid, legacy.client_manager)
        ready.wait()
        try:
            config = ConfigRecord({Key.START_TIME: timeit.default_timer()})
            legacy.state.config_records[MAIN_CONFIGS_RECORD] = config
            for round, settings in enumerate(plan, start=1):
                config[Key.CURRENT_ROUND] = round
                parameters = ndarrays_to_parameters(state_arrays(strategy.model))
                legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(parameters, True)
                (default_fit_workflow if settings is None else settings.workflow())(grid, legacy)
        finally:
            stop.set()
            thread.join()

    return app
