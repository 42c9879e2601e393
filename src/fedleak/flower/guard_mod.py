"""fedleak's leakage guard (:mod:`fedleak.detection.leakage_guard`) as a Flower client mod: an update defense.

The mod only translates messages. It reads and validates the train message, lets the inner handler train, takes
the update (reply state minus received state, per floating-point entry), has :class:`LeakageGuard` zero the rows
that read out one of the samples the client trained on (replayed with :meth:`fedleak.fl.Client.trained_samples`
from the client's own seeded draws, so the mod needs nothing from inside the handler) and replies
``received + sanitised update`` under the same record key and array keys, with every other record unchanged, as
:func:`fedleak.flower.defense_mods.update_mod` does. With ``refuse=True`` a leaking update is not sent: the reply
is an ``Error`` naming the layer. The zeroed rows are not reported to the server (the server learns nothing new).
"""
from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.detection.leakage_guard import LeakageGuard
from fedleak.flower.client import LoadLocal, train_mod
from fedleak.flower.records import (apply_delta, load_state, record_to_state, refusal, single_array_record,
                                    state_delta, state_to_record)


def leakage_guard_mod(load_local: LoadLocal, guard: LeakageGuard | None = None, *, refuse: bool = False) -> Mod:
    """A Flower mod sanitising every train reply with ``guard`` (default :class:`LeakageGuard`'s settings);
    ``load_local(context)`` gives the client's architecture and data (:class:`fedleak.flower.LocalClient`)."""
    guard = guard or LeakageGuard()
    if not isinstance(guard, LeakageGuard):
        raise TypeError(f"leakage_guard_mod takes a LeakageGuard, got {type(guard).__name__}")

    def sanitised_reply(message: Message, context: Context, call_next: ClientAppCallable, local, received,
                        round: int) -> Message:
        client, device = local.client, local.client.config.device
        try:
            model = load_state(received, local.model, device=device)
        except ValueError as error:
            return refusal(message, f"client {client.client_id}: {error}")
        reply = call_next(message, context)
        if reply.has_error():
            return reply
        try:
            key, returned = single_array_record(reply.content, what="reply")
            trained = record_to_state(returned, device=device)
            update = state_delta(received, trained)
        except ValueError as error:
            return refusal(message, f"leakage guard: {error}")
        samples, _ = client.trained_samples(round)
        sanitised, report = guard.sanitise(model, samples, update, device=device)
        if refuse and report.zeroed:
            layer = next(name for name, v in report.layers.items() if v["rows"])
            return refusal(message, f"client {client.client_id}: leakage guard: {report.zeroed} rows of the "
                                    f"update read out local samples (first at {layer})")
        reply.content[key] = state_to_record(apply_delta(received, sanitised, trained))
        return reply

    return train_mod(load_local, sanitised_reply)
