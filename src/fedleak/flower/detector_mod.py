"""fedleak's detectors as a Flower client mod: inspect the received model before local training (Wang & Li §3.1,
§5.1).

The mod reads the model from the message's ``ArrayRecord``, runs the strict architecture check of §3.1 against
the client's own architecture, loads the state into it and runs the other detectors on ``samples`` local
training samples. At the first flag it replies with a Flower ``Error`` (``MOD_FAILED_PRECONDITION``) whose reason
names the detector, layer, statistic and score, and the client does not train; a clean model goes to the next
handler untouched.

Detectors with memory (a :class:`fedleak.detection.CalibratedDetector`'s benign scores, the rounds a
:class:`fedleak.detection.WarmupZScore` remembers) keep it in the client's ``context.state`` across rounds: the
detector objects are stored pickled in a ``ConfigRecord``. ``context.state`` stays on the client, so the client
only ever unpickles what it wrote itself; nothing received from the server is unpickled.
"""
from __future__ import annotations

import json
import pickle
from typing import Callable, Mapping, Sequence

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable, Mod

from fedleak import seeds
from fedleak.detection import build_detector
from fedleak.detection.architecture import architecture_check
from fedleak.detection.verdict import Detector, Verdict
from fedleak.flower.client import LoadLocal, server_round
from fedleak.flower.records import is_train, load_state, record_to_state, refusal, single_array_record

STATE_KEY = "fedleak.detection"
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


def _restore(context: Context, factory: DetectorFactory) -> tuple[list[Detector], list[dict]]:
    stored = context.state.config_records.get(STATE_KEY)
    if stored is None:
        detectors = list(factory())
        if not detectors:
            raise ValueError("detector_mod's detector factory returned no detector")
        return detectors, []
    return pickle.loads(stored["detectors"]), json.loads(stored["history"])


def _store(context: Context, detectors: list[Detector], history: list[dict]) -> None:
    try:
        blob = pickle.dumps(detectors)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(f"detector_mod keeps its detectors in the Flower context, so they must be picklable "
                         f"(no lambdas or local functions): {error}") from None
    context.state.config_records[STATE_KEY] = ConfigRecord({"detectors": blob, "history": json.dumps(history)})


def _summary(round: int, verdicts: list[Verdict]) -> dict:
    flagged = next((v for v in verdicts if v.flagged), None)
    return {"round": round, "refused": flagged is not None,
            "verdicts": [{"detector": v.detector, "layer": v.layer, "statistic": v.statistic, "score": v.score,
                          "threshold": v.threshold, "flagged": v.flagged} for v in verdicts]}


def detection_history(context: Context) -> list[dict]:
    """Per round this client was asked to train: whether it refused and every detector's verdict."""
    stored = context.state.config_records.get(STATE_KEY)
    return [] if stored is None else json.loads(stored["history"])


def detector_mod(load_local: LoadLocal, detectors: DetectorFactory, *, samples: int = 128,
                 refuse: bool = True) -> Mod:
    """A Flower mod running the architecture check and ``detectors()`` on every model a client is asked to train.

    ``load_local(context)`` gives the client's architecture and data (:class:`fedleak.flower.LocalClient`);
    ``detectors`` is called once per client to create its detectors (see :func:`named_detectors`). With
    ``refuse=False`` the verdicts are only recorded (in ``context.state``, see :func:`detection_history`)."""
    if samples < 2:
        raise ValueError(f"the detectors need at least 2 local samples, got samples={samples}")

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if not is_train(message):
            return call_next(message, context)
        local = load_local(context)
        client, device = local.client, local.client.config.device
        round = server_round(message)
        try:
            _, record = single_array_record(message.content)
        except ValueError as error:
            return refusal(message, f"client {client.client_id}: {error}")
        state = record_to_state(record, device=device)
        chain, history = _restore(context, detectors)
        verdicts = [architecture_check(state, local.model, device=device)]
        if not verdicts[0].flagged:
            model = load_state(state, local.model, device=device)
            batch = next(client.batches(samples, seeds.generator(client.config.seed, client.client_id, round,
                                                                 seeds.DETECTION)))
            for detector in chain:
                verdicts.append(detector(model, local.model, [batch], device=device))
                if verdicts[-1].flagged and refuse:
                    break
        _store(context, chain, history + [_summary(round, verdicts)])
        flagged = next((v for v in verdicts if v.flagged), None)
        if flagged is not None and refuse:
            return refusal(message, f"client {client.client_id} refused the model of round {round}: "
                                    f"{flagged.detector}: {flagged.reason()}")
        return call_next(message, context)

    return mod
