"""The detector chain: inspect a received model before local training (Wang & Li §3.1, §5.1), and its client mod.

A :class:`DetectorChain` holds the detectors in order, the client's own copy of the architecture, the number of
local ``samples`` the detectors get and whether a flag refuses the model. ``chain.check(received, batch)`` runs the
detectors in order and returns their verdicts (stopping at the first flag when it refuses); ``chain.refusal
(verdicts)`` is the verdict that refuses the model, if any. A received *state dict* is first put through the strict
architecture check of §3.1 (its verdict comes first) and loaded into a copy of the local architecture.

The chain's memory (what its detectors remember of earlier rounds, e.g. a :class:`CalibratedDetector`'s benign
scores or a :class:`WarmupZScore`'s accepted rounds, and the chain's own history of verdicts) is
``chain.state_dict()``: nested dicts and lists of plain numbers, strings and tensors, restored by
``load_state_dict`` (as Opacus's accountants do), never a pickle. ``check(..., remember=False)`` leaves it as it was.

The named chains are here too, each a tuple of registered detector names in the order they run (paper 000's
detectors :data:`PAPER`; the first-contact signatures :data:`SIGNATURES`, :data:`DEMOTED` from them and the default
:data:`FIRST_CONTACT`, see :mod:`fedleak.detection.first_contact`; :data:`GUARDED`), :func:`chain_detectors`, the
one place a chain's detectors get their options, and :func:`verdict_rows`, the one way verdicts become table rows.

Two adapters use the one chain: :func:`detector_mod` for :class:`fedleak.fl.Client` (below; it keeps each client's
state dict in ``client.context[STATE_KEY]`` and raises :class:`fedleak.fl.ModelRefused`) and
:func:`fedleak.flower.detector_mod` (state in Flower's ``context.state``, a refusal as an ``Error`` reply).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from fedleak import seeds
from fedleak.detection.architecture import architecture_check
from fedleak.detection.options import check_detector_options
from fedleak.detection.verdict import Batch, Detector, Verdict, check_batch
from fedleak.fl.client import CallNext, Client, ClientMod, ClientUpdate, ModelRefused

STATE_KEY = "detection"
VerdictSink = Callable[[Client, list[Verdict]], None]

PAPER = ("architecture", "filter_ratio", "dsnr", "warmup_zscore")  # Wang & Li (paper 000) §3, §5, in its order
# the columns of the paper's detection tables: its detectors, and the warm-up Z-score that remembers accepted rounds
PAPER_COLUMNS = (*PAPER, "warmup_zscore+rounds")
SIGNATURES = ("architecture", "degenerate_rows", "parallel_rows", "mirrored_rows", "sign_imbalance",
              "batch_dominance")  # the first-contact chain before the open-world measurement, in its order
DEMOTED = ("degenerate_rows", "parallel_rows", "mirrored_rows")  # over the false-alarm bound on the benign zoo
FIRST_CONTACT = tuple(name for name in SIGNATURES if name not in DEMOTED)  # the default first-contact chain
GUARDED = (*FIRST_CONTACT, "leakage_guard")  # the guarded client: the chain, then the guard on its update
# the first-contact evaluation: the default chain, the demoted signatures, the self-audit and the paper's detectors
FIRST_CONTACT_EVAL = (*FIRST_CONTACT, *DEMOTED, "self_audit", *PAPER[1:])
CHAINS = {"paper": PAPER, "signatures": SIGNATURES, "first_contact": FIRST_CONTACT,
          "first_contact_eval": FIRST_CONTACT_EVAL}


@dataclass(frozen=True)
class ChainSettings:
    """What a chain's detectors take from the client: ``samples`` local samples (the warm-up Z-score's and the
    self-audit's batch), ``seed``, ``remember_rounds`` (the warm-up Z-score's memory of accepted rounds) and
    ``dsnr_batch`` (D-SNR's batch; default ``samples``)."""

    samples: int = 128
    seed: int = 0
    remember_rounds: int = 0
    dsnr_batch: int | None = None


# the options each detector takes from the chain's settings (the others take none)
_OPTIONS = {
    "dsnr": lambda s: {"batch_size": s.samples if s.dsnr_batch is None else s.dsnr_batch, "seed": s.seed},
    "warmup_zscore": lambda s: {"samples": s.samples, "remember_rounds": s.remember_rounds, "seed": s.seed},
    "self_audit": lambda s: {"batch_size": s.samples, "seed": s.seed},
}


def chain_detectors(names: Sequence[str], settings: ChainSettings = ChainSettings()) -> list[Detector]:
    """Fresh detectors of ``names`` (a named chain of :data:`CHAINS` or any registered names), in order, each with
    the options it takes from ``settings``."""
    from fedleak.detection import build_detector  # the registry imports this module

    return [build_detector(name, **_OPTIONS.get(name, lambda s: {})(settings)) for name in names]


def build_chain(names: Sequence[str], local_model: nn.Module, settings: ChainSettings = ChainSettings(), *,
                refuse: bool = True) -> DetectorChain:
    """A :class:`DetectorChain` of :func:`chain_detectors` reading ``settings.samples`` local samples."""
    return DetectorChain(chain_detectors(names, settings), local_model, samples=settings.samples, refuse=refuse)


def verdict_rows(verdicts: Sequence[Verdict]) -> dict[str, dict]:
    """One row per detector (score, threshold, flagged, layer, statistic, seconds); the warm-up Z-score gives two:
    ``warmup_zscore`` as in the paper (warm-up steps only, its ``details["paper"]``) and ``warmup_zscore+rounds``
    with the memory of earlier rounds (this package's extension), each with its step."""
    rows = {}
    for v in verdicts:
        row = {"score": v.score, "threshold": v.threshold, "flagged": v.flagged, "layer": v.layer,
               "statistic": v.statistic, "seconds": v.seconds}
        if v.detector != "warmup_zscore":
            rows[v.detector] = row
            continue
        rows["warmup_zscore+rounds"] = {**row, "step": v.details["step"]}
        rows["warmup_zscore"] = {**row, **v.details["paper"]}
    return rows


def any_flagged(rows: Mapping[str, dict], names: Sequence[str]) -> bool:
    """Whether any detector of ``names`` among ``rows`` (:func:`verdict_rows`) flagged: the chain ``names`` refuses."""
    return any(rows[name]["flagged"] for name in names if name in rows)


class DetectorChain:
    """``detectors`` run in order on every received model; ``local_model`` is the client's own architecture (for
    the architecture check and to load a received state); ``samples`` local samples per check; with
    ``refuse=False`` a flag is only recorded (how ``fedleak detect-eval`` measures every detector on every
    client-round). ``initial_state`` is the memory a client starts from: the detectors' state when the chain was
    built (e.g. a calibration already fitted).

    To check a client's model without changing what the client remembers (an experiment's what-if)::

        chain = DetectorChain(detectors, local_model, samples=128, refuse=False)
        server = ...  # clients with mods=(detector_mod(chain),)
        verdicts = chain.check_client(client, manipulated, round=r, remember=False)
    """

    def __init__(self, detectors: Sequence[Detector], local_model: nn.Module, *, samples: int = 128,
                 refuse: bool = True):
        if not detectors:
            raise ValueError("a detector chain needs at least one detector")
        if not isinstance(local_model, nn.Module):
            raise TypeError(f"local_model must be the client's nn.Module, got {type(local_model).__name__}")
        check_detector_options("detector chain", {"samples": samples})
        self.detectors, self.local_model = list(detectors), local_model
        self.samples, self.refuse = samples, refuse
        self.history: list[dict] = []
        self.initial_state = self.state_dict()  # where a client without memory starts

    def batch(self, client: Client, round: int) -> Batch:
        """``samples`` random training samples of ``client`` for ``round`` (the stream ``seeds.DETECTION`` of the
        client's run seed, client and round), checked to be finite."""
        generator = seeds.generator(client.config.seed, client.client_id, round, seeds.DETECTION)
        return check_batch(next(client.batches(self.samples, generator)),
                           what=f"client {client.client_id}'s local batch")

    def check(self, received: nn.Module | Mapping[str, torch.Tensor], batch: Batch, *, round: int | None = None,
              device: str | torch.device = "cpu", remember: bool = True) -> list[Verdict]:
        """Every detector's verdict on ``received`` (a model, or a state dict checked and loaded strictly first),
        in order, up to the first flag when the chain refuses. With ``remember`` the detectors' memory and the
        chain's history learn from this round (labelled ``round``); without, the chain's state is left as it
        was."""
        check_batch(batch)
        before = None if remember else self.state_dict()
        try:
            verdicts = self._run(received, batch, device)
            if remember:
                self.history.append(_summary(round, self.refusal(verdicts) is not None, verdicts))
        finally:
            if before is not None:
                self.load_state_dict(before)
        return verdicts

    def _run(self, received, batch: Batch, device) -> list[Verdict]:
        verdicts = []
        if isinstance(received, Mapping):
            verdicts.append(architecture_check(received, self.local_model, device=device))
            if verdicts[0].flagged:
                return verdicts
            model = copy.deepcopy(self.local_model).to(device)
            model.load_state_dict(received, strict=True)
        elif isinstance(received, nn.Module):
            model = received
        else:
            raise TypeError(f"a received model is an nn.Module or a state dict, got {type(received).__name__}")
        for detector in self.detectors:
            verdicts.append(detector(model, self.local_model, [batch], device=device))
            if self.refuse and verdicts[-1].flagged:
                break
        return verdicts

    def refusal(self, verdicts: Sequence[Verdict]) -> Verdict | None:
        """The verdict that refuses the model: the first flagged one, when the chain refuses."""
        return next((v for v in verdicts if v.flagged), None) if self.refuse else None

    def check_client(self, client: Client, received: nn.Module, *, round: int | None = None,
                     remember: bool = True) -> list[Verdict]:
        """:meth:`check` on ``client``'s batch for ``round`` (default: the client's current round) with the memory
        ``client`` has of earlier rounds (kept in ``client.context[STATE_KEY]``; updated only with ``remember``)."""
        round = client.round if round is None else round
        self.load_state_dict(client.context.get(STATE_KEY, self.initial_state))
        verdicts = self.check(received, self.batch(client, round), round=round, device=client.config.device,
                              remember=remember)
        if remember:
            client.context[STATE_KEY] = self.state_dict()
        return verdicts

    def state_dict(self) -> dict:
        """The memory of every detector that keeps one (by position in the chain) and the history of verdicts."""
        return {"detectors": {str(i): d.state_dict() for i, d in enumerate(self.detectors)
                              if _memory(d) is not None},
                "history": copy.deepcopy(self.history)}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what :meth:`state_dict` returned (from this chain or one with the same detectors)."""
        if not isinstance(state, Mapping) or not isinstance(state.get("detectors"), Mapping) or not isinstance(
                state.get("history"), list):
            raise ValueError("a detector chain state needs 'detectors' (a mapping) and 'history' (a list)")
        keeping = [str(i) for i, d in enumerate(self.detectors) if _memory(d) is not None]
        if sorted(state["detectors"]) != sorted(keeping):
            raise ValueError(f"the state holds the memory of detectors {sorted(state['detectors'])} but this "
                             f"chain's detectors with memory are {keeping}")
        for key in keeping:
            self.detectors[int(key)].load_state_dict(state["detectors"][key])
        self.history = copy.deepcopy(list(state["history"]))


def _memory(detector: Detector):
    """The detector's ``state_dict`` method if it remembers anything across rounds (a function does not)."""
    return getattr(detector, "state_dict", None)


def _summary(round: int | None, refused: bool, verdicts: list[Verdict]) -> dict:
    return {"round": round, "refused": refused,
            "verdicts": [{"detector": v.detector, "layer": v.layer, "statistic": v.statistic, "score": v.score,
                          "threshold": v.threshold, "flagged": v.flagged} for v in verdicts]}


def detector_mod(chain: DetectorChain, *, on_verdicts: VerdictSink | None = None) -> ClientMod:
    """A client mod running ``chain`` on every received model with the client's own memory; it raises
    :class:`ModelRefused` (naming detector, layer and score) when the chain refuses, and otherwise attaches the
    verdicts to the update's metrics. ``on_verdicts(client, verdicts)`` sees the verdicts of each check."""
    if not isinstance(chain, DetectorChain):
        raise TypeError(f"detector_mod takes a DetectorChain, got {type(chain).__name__}")

    def mod(model: nn.Module, client: Client, call_next: CallNext) -> ClientUpdate:
        verdicts = chain.check_client(client, model)
        if on_verdicts is not None:
            on_verdicts(client, verdicts)
        refused = chain.refusal(verdicts)
        if refused is not None:
            raise ModelRefused(client.client_id, refused.detector, refused.reason(), refused)
        update = call_next(model)
        update.metrics["detection"] = [v.to_dict() for v in verdicts]
        return update

    return mod
