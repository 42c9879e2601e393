"""fedleak's detector chain as a Flower client mod: inspect the received model before local training (Wang & Li
§3.1, §5.1).

The mod only translates messages; the checks are :class:`fedleak.detection.DetectorChain`'s. It reads and
validates the train message (one ``ArrayRecord`` of numeric arrays, an integer ``server-round``), runs the chain on
the received state (the strict architecture check of §3.1 first, then the detectors on ``samples`` local training
samples) and, at the first flag, replies with a Flower ``Error`` (``MOD_FAILED_PRECONDITION``) whose reason names
the detector, layer, statistic and score; the client does not train. A clean model goes to the next handler
untouched. An invalid message is answered with an ``Error`` too.

The chain's memory (a :class:`fedleak.detection.CalibratedDetector`'s benign scores, the rounds a
:class:`fedleak.detection.WarmupZScore` remembers, the history of verdicts) is its ``state_dict()``, kept in the
client's ``context.state`` as two records: the tensors in an ``ArrayRecord`` and everything else (numbers,
strings, lists) as JSON text in a ``ConfigRecord``. No detector object is serialised.
"""
from __future__ import annotations

import json
from typing import Callable, Mapping, Sequence

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak.detection import build_detector
from fedleak.detection.chain import DetectorChain
from fedleak.detection.options import check_detector_options
from fedleak.detection.verdict import Detector
from fedleak.flower.client import LoadLocal, train_mod
from fedleak.flower.records import record_to_state, refusal, state_to_record

STATE_KEY = "fedleak.detection"  # the ConfigRecord; the ArrayRecord is under TENSORS_KEY (one key space)
TENSORS_KEY = "fedleak.detection.tensors"
TENSOR = "__tensor__"  # marks where a tensor of the state dict sits in its JSON text
DetectorFactory = Callable[[], Sequence[Detector]]


def named_detectors(spec: Mapping[str, Mapping] | Sequence[str]) -> DetectorFactory:
    """A factory of fresh detectors from registered names and their options, e.g.
    ``{"warmup_zscore": {"remember_rounds": 3}}`` or ``["dsnr", "warmup_zscore"]``; names and options are
    checked now."""
    items = [(name, {}) for name in spec] if not isinstance(spec, Mapping) else list(spec.items())
    if not items:
        raise ValueError("detector_mod needs at least one detector")
    for name, options in items:
        build_detector(name, **dict(options))  # unknown names or options fail here, listing the valid ones

    def build() -> list[Detector]:
        return [build_detector(name, **dict(options)) for name, options in items]

    return build


def store_state(context: Context, state: Mapping) -> None:
    """Keep a chain's ``state_dict()`` in ``context.state``: tensors in an ``ArrayRecord``, the rest as JSON."""
    tensors: dict[str, torch.Tensor] = {}

    def strip(node, path: str):
        if isinstance(node, torch.Tensor):
            tensors[path] = node
            return {TENSOR: path}
        if isinstance(node, Mapping):
            return {str(k): strip(v, f"{path}.{k}") for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [strip(v, f"{path}.{i}") for i, v in enumerate(node)]
        return node

    text = json.dumps(strip(state, "state"))
    context.state.array_records[TENSORS_KEY] = state_to_record(tensors)
    context.state.config_records[STATE_KEY] = ConfigRecord({"state": text})


def stored_state(context: Context) -> dict | None:
    """The chain state :func:`store_state` kept in ``context.state``, or None before the first round."""
    config = context.state.config_records.get(STATE_KEY)
    if config is None:
        return None
    tensors = record_to_state(context.state.array_records.get(TENSORS_KEY, ArrayRecord()))

    def restore(node):
        if isinstance(node, dict):
            if set(node) == {TENSOR}:
                return tensors[node[TENSOR]]
            return {k: restore(v) for k, v in node.items()}
        if isinstance(node, list):
            return [restore(v) for v in node]
        return node

    return restore(json.loads(config["state"]))


def detection_history(context: Context) -> list[dict]:
    """Per round this client was asked to train: the round, whether it refused and every detector's verdict."""
    state = stored_state(context)
    return [] if state is None else state["history"]


def detector_mod(load_local: LoadLocal, detectors: DetectorFactory, *, samples: int = 128,
                 refuse: bool = True) -> Mod:
    """A Flower mod running the architecture check and ``detectors()`` on every model a client is asked to train.

    ``load_local(context)`` gives the client's architecture and data (:class:`fedleak.flower.LocalClient`);
    ``detectors`` is called to create the client's chain, whose memory is then restored from ``context.state``
    (see :func:`named_detectors`). With ``refuse=False`` the verdicts are only recorded (in ``context.state``, see
    :func:`detection_history`)."""
    check_detector_options("detector_mod", {"samples": samples})

    def checked(message: Message, context: Context, call_next: ClientAppCallable, local, state,
                round: int) -> Message:
        client, device = local.client, local.client.config.device
        chain = DetectorChain(list(detectors()), local.model, samples=samples, refuse=refuse)
        memory = stored_state(context)
        if memory is not None:
            chain.load_state_dict(memory)
        verdicts = chain.check(state, chain.batch(client, round), round=round, device=device)
        store_state(context, chain.state_dict())
        refused = chain.refusal(verdicts)
        if refused is not None:
            return refusal(message, f"client {client.client_id} refused the model of round {round}: "
                                    f"{refused.detector}: {refused.reason()}")
        return call_next(message, context)

    return train_mod(load_local, checked)
