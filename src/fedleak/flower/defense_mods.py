"""Update-level client defenses as Flower mods: gradient pruning and additive Gaussian noise.

Each mod lets the inner handler train, takes the update (reply state minus received state, per floating-point
entry), transforms it and replies ``received + transformed update`` under the same record key and array keys, in
the same order, with every other record (``num-examples`` in the ``MetricRecord``) unchanged. That is the layout
Flower's ``LocalDpMod`` checks, so the mods compose with it in either order. They act on train messages only.

In Flower 1.41 SecAgg+ (``flwr.client.mod.secaggplus_mod``) exists only for the legacy record layout
(``NumPyClient`` apps driven by the legacy ``SecAggPlusWorkflow``); it does not apply to the Message-API
strategies such as ``flwr.serverapp.strategy.FedAvg`` that fedleak's apps use, so it is not combined here.
"""
from __future__ import annotations

from typing import Callable

import torch
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.defenses import prune_gradients
from fedleak.flower.client import server_round
from fedleak.flower.records import (apply_delta, is_train, record_to_state, refusal, single_array_record,
                                    state_delta, state_to_record)

UpdateTransform = Callable[[dict[str, torch.Tensor], Message, Context], dict[str, torch.Tensor]]


def update_mod(transform: UpdateTransform, name: str) -> Mod:
    """A mod replacing the update of every train reply by ``transform(update, message, context)``."""

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if not is_train(message):
            return call_next(message, context)
        try:
            _, sent = single_array_record(message.content)
        except ValueError as error:
            return refusal(message, f"{name}: {error}")
        received = record_to_state(sent)  # read before the inner handler, which may consume the record
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        try:
            key, returned = single_array_record(reply.content, what="reply")
            trained = record_to_state(returned)
            update = state_delta(received, trained)
        except ValueError as error:
            return refusal(message, f"{name}: {error}")
        reply.content[key] = state_to_record(apply_delta(received, transform(update, message, context), trained))
        return reply

    return mod


def pruning_mod(p: float) -> Mod:
    """Gradient pruning of the update (Lin et al. 2017; paper 001 §3.4.3): in every tensor the share ``p`` of
    entries of smallest magnitude is set to zero (:func:`fedleak.defenses.prune_gradients`)."""
    prune_gradients({}, p)  # validates p now

    def prune(update, message, context):
        return prune_gradients(update, p)[0]

    return update_mod(prune, f"pruning_mod(p={p})")


def noise_mod(std: float, *, seed: int | None = None) -> Mod:
    """Additive Gaussian noise N(0, std^2) on every entry of the update, the "noisy gradients" defense of Zhu et al.
    (Deep Leakage from Gradients, 2019, §5). Without clipping it gives no formal guarantee; Flower's ``LocalDpMod``
    clips and calibrates the noise to (epsilon, delta). ``seed`` makes the draws reproducible per node and round
    (default: torch's global generator)."""
    if isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
        raise ValueError(f"noise std must be a number >= 0, got {std!r}")

    def add_noise(update, message, context):
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(hash((seed, context.node_id, server_round(message))) % 2**63)
        return {key: value + std * torch.randn(value.shape, generator=generator, dtype=value.dtype).to(value.device)
                for key, value in update.items()}

    return update_mod(add_noise, f"noise_mod(std={std})")
