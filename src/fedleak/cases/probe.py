"""The first-contact what-if (Wang & Li §3, §5): the malicious server prepares an attack on the round's model, the
clients' detector chain checks what it would be sent, and the server observes the FedSGD gradient it would get.

One path for every experiment that asks "would the client have refused this model, and what does it leak":
:func:`prepare_attack` is ``ATTACKS.build(name, **options).prepare(model, context)`` (an attack that does not
apply to the model, or changes nothing in it, gives ``None`` and why); :func:`sent_to` reads one client's model out
of what was sent (one model for all, or a mapping client id -> model for model inconsistency and LOKI);
:func:`check_clients` has each client's detector chain check its model without changing what the client
remembers; :func:`malicious_rounds` is the malicious server of a what-if run, the ``before_round`` hook of
:meth:`fedleak.fl.Server.run` that does all three for each setting at the chosen rounds;
:func:`fedsgd_observed` and :func:`observed_update` are what the server sees of one client's reply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext, Observed, Sent, stack_updates
from fedleak.attacks.settings import AttackSetting
from fedleak.data.base import DatasetInfo
from fedleak.detection.chain import DetectorChain
from fedleak.detection.verdict import Verdict
from fedleak.fl.client import Client, ClientUpdate
from fedleak.fl.training import batch_gradients


@dataclass
class Prepared:
    """What the server would send (``sent``: a model, or client id -> model), what it keeps (``secret``) and the
    attack object (for ``reconstruct``); ``sent`` is None when the attack does not apply, with ``reason``."""

    attack: object
    sent: Sent | None
    secret: object = None
    reason: str = ""


def prepare_attack(name: str, model: nn.Module, context: AttackContext, **options) -> Prepared:
    """``ATTACKS.build(name, **options).prepare(model, context)``; ``sent`` None (and why) when the attack refuses
    the model (ValueError) or sends one model equal in every entry to ``model``."""
    attack = None
    try:
        attack = ATTACKS.build(name, **options)
        sent, secret = attack.prepare(model, context)
    except ValueError as error:
        return Prepared(attack, None, reason=str(error))
    if isinstance(sent, nn.Module) and _same_state(model, sent):
        return Prepared(attack, None, reason="changes nothing in this model")
    return Prepared(attack, sent, secret)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    before, after = a.state_dict(), b.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def sent_to(sent: Sent, client_id: int) -> nn.Module:
    """The model ``client_id`` receives: ``sent`` itself, or its entry when each client gets its own."""
    if isinstance(sent, nn.Module):
        return sent
    if client_id not in sent:
        raise KeyError(f"the server sent no model to client {client_id} (it sent to {sorted(sent)})")
    return sent[client_id]


def check_clients(chain: DetectorChain, clients: list[Client], sent: Sent, *, round: int
                  ) -> Mapping[int, list[Verdict]]:
    """Each client's verdicts on the model it would be sent in ``round``, from its own batch and memory (the
    chain's ``remember=False``: what the client remembers is left as it was)."""
    return {client.client_id: chain.check_client(client, sent_to(sent, client.client_id), round=round,
                                                 remember=False) for client in clients}


ProbeSink = Callable[[int, AttackSetting, Prepared, Mapping[int, list[Verdict]]], None]


def malicious_rounds(chain: DetectorChain, *, rounds: Sequence[int], clients: int, info: DatasetInfo,
                     public: torch.Tensor, settings: Callable[[nn.Module], Sequence[AttackSetting]],
                     on_probe: ProbeSink, skip: Callable[[int, AttackSetting], bool] = lambda r, s: False):
    """A ``before_round(round, server)`` hook: at each of ``rounds`` every setting of ``settings(global model)``
    (but those ``skip(round, setting)`` names) is prepared on the round's model (:func:`prepare_attack`, the server
    holding ``public``) and checked by the first ``clients`` clients (:func:`check_clients`); ``on_probe(round,
    setting, prepared, verdicts per client)`` records it (no verdicts when the attack does not apply). The round
    itself then runs on the honest model: the what-if leaves the federation as it was."""
    def before_round(round: int, server) -> None:
        if round not in rounds:
            return
        for setting in settings(server.model):
            if skip(round, setting):
                continue
            prepared = prepare_attack(setting.attack, server.model, setting.context(info, public), **setting.options)
            verdicts = {} if prepared.sent is None else check_clients(chain, server.clients[:clients],
                                                                      prepared.sent, round=round)
            on_probe(round, setting, prepared, verdicts)

    return before_round


def fedsgd_observed(sent: nn.Module, x: torch.Tensor, y: torch.Tensor, *, source: int = 0) -> Observed:
    """What the server sees when one client returns the FedSGD gradient of ``sent`` on its batch ``(x, y)``."""
    gradients = batch_gradients(sent, x, y)
    return Observed({k: v.unsqueeze(0) for k, v in gradients.items()}, "gradient", (source,), (len(y),), (sent,))


def observed_update(update: ClientUpdate, source: int, sent: nn.Module) -> Observed:
    """What the server sees of one client's reply ``update`` to the model ``sent``."""
    return Observed(stack_updates([update.tensors]), update.kind, (source,), (update.num_examples,), (sent,))
