"""A fedleak client as a Flower ``ClientApp``: the same local training, defenses and mods, on Flower messages.

What a Flower client holds is a :class:`LocalClient`: its own copy of the model architecture (to check and load
what it receives) and a :class:`fedleak.fl.Client` (local data, training recipe, ``gradient_fn`` such as DP-SGD,
fedleak mods). :func:`train_handler` loads the received ``ArrayRecord`` strictly into that architecture, runs
``client.handle`` and replies with the trained state and ``num-examples``, the keys Flower's ``FedAvg`` reads.
The client's recipe is its own: it does not take a learning rate or epoch count from the server's message.

With DP-SGD (:class:`fedleak.defenses.DPSGD` as ``gradient_fn``) the privacy spent is accounted across rounds
in the client's ``context.state`` (Opacus's RDP accountant, one step per local step at sampling rate
``batch_size / n``, the usual approximation of Abadi et al.'s Poisson sampling by shuffled batches) and reported
as the ``dp-epsilon`` metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.defenses import DPAccountant, DPSGD, apply_defenses
from fedleak.detection.architecture import ArchitectureMismatch
from fedleak.fl.client import Client, ClientUpdate, ModelRefused
from fedleak.fl.training import evaluate
from fedleak.flower.records import (State, apply_delta, is_train, load_state, record_to_state, refusal,
                                    single_array_record, state_to_record)

DP_STATE_KEY = "fedleak.dp"


@dataclass
class LocalClient:
    """One Flower client's side: ``model`` is its own copy of the architecture (its weights are never used for
    training: each round trains the received state) and ``client`` its fedleak client."""

    model: nn.Module
    client: Client


LoadLocal = Callable[[Context], LocalClient]


def server_round(message: Message) -> int:
    """The round number the strategy put in the message's config (``server-round``), 0 when absent; a
    ``ValueError`` when it is not a non-negative integer."""
    for record in message.content.config_records.values():
        if "server-round" in record:
            value = record["server-round"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"the message's server-round must be a non-negative integer, got {value!r}")
            return value
    return 0


def received_model(message: Message, *, device: str | torch.device = "cpu") -> tuple[str, State, int]:
    """``(record key, state dict, server round)`` of a train message, every field checked: exactly one
    ``ArrayRecord`` of numeric arrays and a valid ``server-round`` (a ``ValueError`` names what is wrong)."""
    key, record = single_array_record(message.content)
    return key, record_to_state(record, device=device), server_round(message)


TrainHandler = Callable[[Message, Context, ClientAppCallable, "LocalClient", State, int], Message]


def train_mod(load_local: LoadLocal, handle: TrainHandler) -> Mod:
    """A Flower mod that passes every message but a train message on; for a train message it loads the client's
    architecture and data (``load_local``) and the received model, checked (:func:`received_model`; an invalid one
    is answered with an ``Error`` naming the client, before any work), and lets ``handle(message, context,
    call_next, local, received state, server round)`` reply (the detector and leakage-guard mods)."""
    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if not is_train(message):
            return call_next(message, context)
        local = load_local(context)
        try:
            _, state, round = received_model(message, device=local.client.config.device)
        except ValueError as error:
            return refusal(message, f"client {local.client.client_id}: {error}")
        return handle(message, context, call_next, local, state, round)

    return mod


def trained_state(received: dict, update: ClientUpdate, model: nn.Module, lr: float) -> dict:
    """The state a client sends back: received + delta (FedAvg), or one SGD step ``received - lr * gradient``
    for a FedSGD gradient, so that ``FedAvg``'s weighted mean of the replies is the FedSGD server step."""
    if update.kind == "gradient":
        step = {key: -lr * grad for key, grad in update.tensors.items()}
        return apply_delta(received, step)
    return apply_delta(received, update.tensors, model.state_dict())


def privacy_spent(context: Context, client: Client, update: ClientUpdate, delta: float) -> float:
    """Record this round's DP-SGD steps in the accountant kept in ``context.state`` and return epsilon so far."""
    dp = client.gradient_fn
    accountant = DPAccountant()
    stored = context.state.config_records.get(DP_STATE_KEY)
    if stored is not None:
        for sigma, rate, steps in zip(stored["noise"], stored["rate"], stored["steps"]):
            accountant.step(sigma, rate, int(steps))
    steps = 1 if update.kind == "gradient" else int(update.metrics.get("local_steps", 1))
    rate = min(1.0, client.config.batch_size / len(client.data.train))
    accountant.step(dp.sigma, rate, steps)
    history = accountant.history
    context.state.config_records[DP_STATE_KEY] = ConfigRecord({
        "noise": [float(h[0]) for h in history], "rate": [float(h[1]) for h in history],
        "steps": [int(h[2]) for h in history]})
    return accountant.epsilon(delta)


def train_handler(load_local: LoadLocal, *, dp_delta: float = 1e-5) -> Callable[[Message, Context], Message]:
    """A Flower train function running ``load_local(context).client`` on the received model. An invalid message
    (see :func:`received_model`), a received state that does not fit the local architecture, or a fedleak mod's
    :class:`ModelRefused`, becomes an error reply naming the reason."""
    if not 0 < dp_delta < 1:
        raise ValueError(f"dp_delta must be in (0, 1), got {dp_delta}")

    def train(message: Message, context: Context) -> Message:
        local = load_local(context)
        client = local.client
        try:
            key, received, round = received_model(message, device=client.config.device)
        except ValueError as error:
            return refusal(message, f"client {client.client_id}: {error}")
        try:
            model = load_state(received, local.model, device=client.config.device)
            update = client.handle(model, round)
        except ArchitectureMismatch as mismatch:
            return refusal(message, f"client {client.client_id}: {mismatch}")
        except ModelRefused as refused:
            return refusal(message, str(refused))
        metrics = {"num-examples": int(update.num_examples)}
        if isinstance(client.gradient_fn, DPSGD) and client.gradient_fn.sigma > 0:
            metrics["dp-epsilon"] = privacy_spent(context, client, update, dp_delta)
        state = trained_state(received, update, model, client.config.lr)
        return Message(RecordDict({key: state_to_record(state), "metrics": MetricRecord(metrics)}),
                       reply_to=message)

    return train


def evaluate_handler(load_local: LoadLocal) -> Callable[[Message, Context], Message]:
    """A Flower evaluate function: loss and accuracy of the received model on the client's validation data."""

    def evaluate_received(message: Message, context: Context) -> Message:
        local = load_local(context)
        client = local.client
        try:
            _, record = single_array_record(message.content)
            model = load_state(record_to_state(record, device=client.config.device), local.model,
                               device=client.config.device)
        except ValueError as error:  # an invalid record, or ArchitectureMismatch naming the offending keys
            return refusal(message, f"client {client.client_id}: {error}")
        data = client.data.val if len(client.data.val) else client.data.train
        loss, accuracy = evaluate(model, data, device=client.config.device)
        metrics = MetricRecord({"num-examples": len(data), "eval-loss": loss, "eval-accuracy": accuracy})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return evaluate_received


def client_app(load_local: LoadLocal, *, mods: Sequence[Mod] = (), dp_delta: float = 1e-5) -> ClientApp:
    """A ``ClientApp`` whose train and evaluate functions run the fedleak client of ``load_local(context)``.

    ``mods`` (outermost first) wrap the train function only, as ``@app.train(mods=...)`` does: that is where
    detectors, update defenses and Flower's ``LocalDpMod`` (which needs a model in the reply) belong."""
    app = ClientApp()
    app.train(mods=list(mods))(train_handler(load_local, dp_delta=dp_delta))
    app.evaluate()(evaluate_handler(load_local))
    return app


def defended_client(model: nn.Module, defenses: str | Sequence | None, *, model_name: str, client: Client
                    ) -> LocalClient:
    """A :class:`LocalClient` training with fedleak ``defenses`` (``"dropout,dp:sigma=1.0,cvb"``, see
    :func:`fedleak.defenses.apply_defenses`): Dropout, PRECODE and CVB are modules in the architecture (the
    server must build the same one), DP-SGD becomes the client's ``gradient_fn`` (its epsilon is reported by
    :func:`train_handler`) and pruning a fedleak mod of the client."""
    shape = tuple(client.data.train.info.input_shape)
    defended, gradient_fn, mods = apply_defenses(model, defenses, model_name=model_name, input_shape=shape)
    trainer = Client(client.client_id, client.data, client.config, gradient_fn=gradient_fn,
                     mods=(*client.mods, *mods))
    return LocalClient(defended, trainer)
