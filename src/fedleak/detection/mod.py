"""The detectors as a Flower-shaped client mod: inspect the received model before local training (Wang & Li §5.1).

``detector_mod(detectors, local_model)`` returns ``mod(model, client, call_next)``. It draws ``samples`` random
samples of the client's training data, runs the detectors in order on the received model and raises
:class:`fedleak.fl.ModelRefused` (naming detector, layer and score) at the first that flags it; otherwise it calls
``call_next`` and attaches the verdicts to the update's metrics. With ``refuse=False`` it only records (how
``fedleak detect-eval`` measures false alarms and detection rates on every client-round). Each client gets its
own copy of the detectors, kept in ``client.context[CONTEXT_KEY]``, so a detector with memory of earlier rounds
or a calibrated threshold learns from that client's rounds only.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch.nn as nn

from fedleak import seeds
from fedleak.detection.verdict import Batch, Detector, Verdict
from fedleak.fl.client import CallNext, Client, ClientMod, ClientUpdate, ModelRefused

CONTEXT_KEY = "detectors"
VerdictSink = Callable[[Client, list[Verdict]], None]


def local_batch(client: Client, samples: int) -> Batch:
    """``samples`` random training samples of ``client`` for this round (seeded by client, round and run seed)."""
    return next(client.batches(samples, seeds.generator(client.config.seed, client.client_id, client.round,
                                                        seeds.DETECTION)))


def client_detectors(client: Client, detectors: Sequence[Detector]) -> list[Detector]:
    """This client's own copies of ``detectors`` (made on first use, then kept in its context)."""
    return client.context.setdefault(CONTEXT_KEY, [copy.deepcopy(d) for d in detectors])


def detector_mod(detectors: Sequence[Detector], local_model: nn.Module, *, samples: int = 128,
                 refuse: bool = True, on_verdicts: VerdictSink | None = None) -> ClientMod:
    """A client mod running ``detectors`` on every received model; ``local_model`` is the client's own copy of the
    architecture (for the architecture check). ``on_verdicts(client, verdicts)`` sees the verdicts of each check."""
    if not detectors:
        raise ValueError("detector_mod needs at least one detector")
    if samples < 2:
        raise ValueError(f"the detectors need at least 2 local samples, got samples={samples}")

    def mod(model: nn.Module, client: Client, call_next: CallNext) -> ClientUpdate:
        batch = local_batch(client, samples)
        verdicts = []
        try:
            for detector in client_detectors(client, detectors):
                verdict = detector(model, local_model, [batch], device=client.config.device)
                verdicts.append(verdict)
                if refuse and verdict.flagged:
                    raise ModelRefused(client.client_id, verdict.detector, verdict.reason(), verdict)
        finally:
            if on_verdicts is not None:
                on_verdicts(client, verdicts)
        update = call_next(model)
        update.metrics["detection"] = [v.to_dict() for v in verdicts]
        return update

    return mod
