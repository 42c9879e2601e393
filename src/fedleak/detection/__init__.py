"""Client-side detection of malicious models (Wang & Li, *Hear No Evil*, §3 and §5).

Every detector is ``detector(received_model, local_model, batches, *, device, **options) -> Verdict``:
``architecture`` (§3.1 key/shape/dtype check plus NaN/Inf), ``filter_ratio`` (§3.2 first-conv filter ratio),
``dsnr`` (§3.2 eq. 1) and ``warmup_zscore`` (§5, a class: it may remember earlier rounds); beyond the paper,
``self_audit`` applies the server's analytic readout (paper 002 Eq. 5) to the client's own would-be gradient and
names the local samples it would give away, and ``degenerate_rows``, ``parallel_rows``, ``mirrored_rows`` and
``sign_imbalance`` (:mod:`fedleak.detection.weight_forensics`) read weight structures no initialiser or training
produces, and ``batch_dominance`` measures on the client's own samples whether the batch decides which sample's
features carry the output layer's gradient (SEER's mechanism); :data:`FIRST_CONTACT` is the default chain that
checks a model at first contact, without the signatures :data:`DEMOTED` for their false alarms on the benign zoo
(:mod:`fedleak.detection.first_contact`). ``build_detector(name, **options)`` fixes and checks the options;
:class:`CalibratedDetector` fits a threshold from benign rounds; :class:`DetectorChain` runs detectors in order on
a received model and keeps their memory as a state dict, and :func:`detector_mod` runs a chain as a client mod;
:func:`load_received_model` loads a safetensors file strictly.
"""
from __future__ import annotations

import functools
import inspect

from fedleak.detection.architecture import ArchitectureMismatch, architecture_check, compare_states
from fedleak.detection.calibration import CalibratedDetector, Calibration, fit_threshold
from fedleak.detection.dsnr import dsnr_check
from fedleak.detection.filter_ratio import filter_ratio_check
from fedleak.detection.chain import (CHAINS, PAPER, ChainSettings, DetectorChain, build_chain, chain_detectors,
                                     detector_mod, verdict_rows)
from fedleak.detection.batch_dominance import batch_dominance
from fedleak.detection.options import check_detector_options
from fedleak.detection.self_audit import self_audit
from fedleak.detection.safe_load import (ImpossibleModel, UnsafeModelFile, check_model_values, load_received_model,
                                         save_model_file)
from fedleak.detection.verdict import Detector, Verdict
from fedleak.detection.warmup_zscore import WarmupZScore
from fedleak.detection.weight_forensics import (degenerate_rows, mirrored_rows, parallel_rows,
                                                    sign_imbalance)
from fedleak.registry import Registry

DETECTORS: Registry = Registry("detector", fixed=("received_model", "local_model", "batches"))
DETECTORS.register("architecture")(architecture_check)
DETECTORS.register("filter_ratio")(filter_ratio_check)
DETECTORS.register("dsnr")(dsnr_check)
DETECTORS.register("warmup_zscore")(WarmupZScore)
DETECTORS.register("self_audit")(self_audit)
DETECTORS.register("degenerate_rows")(degenerate_rows)
DETECTORS.register("parallel_rows")(parallel_rows)
DETECTORS.register("mirrored_rows")(mirrored_rows)
DETECTORS.register("sign_imbalance")(sign_imbalance)
DETECTORS.register("batch_dominance")(batch_dominance)


def build_detector(name: str, **options) -> Detector:
    """The registered detector ``name`` with keyword ``options`` (e.g. ``threshold``, ``steps``): a new instance
    for a detector class (which keeps state), the function with the options fixed otherwise. Unknown options and
    numeric options out of range (:mod:`fedleak.detection.options`) fail here."""
    DETECTORS.check_options(name, options)
    check_detector_options(f"detector {name!r}", options)
    detector = DETECTORS.get(name)
    if inspect.isclass(detector):
        return detector(**options)
    return functools.partial(detector, **options) if options else detector


# after build_detector: the first-contact chain builds its detectors with it
from fedleak.detection.first_contact import (DEMOTED, FIRST_CONTACT, SIGNATURES, first_contact_chain,  # noqa: E402
                                             first_contact_detectors)


__all__ = [
    "DETECTORS", "build_detector", "Detector", "Verdict", "ArchitectureMismatch", "architecture_check",
    "compare_states", "filter_ratio_check", "dsnr_check", "WarmupZScore", "CalibratedDetector",
    "Calibration", "fit_threshold", "DetectorChain", "detector_mod", "check_detector_options", "UnsafeModelFile",
    "ImpossibleModel", "check_model_values",
    "load_received_model", "save_model_file", "self_audit", "degenerate_rows", "parallel_rows", "mirrored_rows",
    "sign_imbalance", "batch_dominance",
    "FIRST_CONTACT", "DEMOTED", "SIGNATURES", "first_contact_chain", "first_contact_detectors",
    "CHAINS", "PAPER", "ChainSettings", "build_chain", "chain_detectors", "verdict_rows",
]
