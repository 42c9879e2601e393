"""The first-contact detector chain: refuse a manipulated model the first time it arrives, with no memory of
earlier rounds (beyond Wang & Li, paper 000, whose warm-up Z-score needs benign rounds to compare with).

:data:`SIGNATURES` names every first-contact detector in the order it runs: the strict architecture check (§3.1; an
inserted imprint or LOKI block changes the state dict), the four weight-forensics signatures of
:mod:`fedleak.detection.weight_forensics` (structures read from the weights alone) and
:mod:`fedleak.detection.batch_dominance`, which reads the client's own samples: SEER's trained model leaves the
weights unremarkable, but lets the batch decide which sample owns the output layer's gradient. Every threshold is set
before measuring, by what a benign model can produce (each module says how); none is fitted to an evaluation.

:data:`FIRST_CONTACT`, the default chain, is :data:`SIGNATURES` without :data:`DEMOTED`: the detectors that could not
stay under a false-alarm rate of 0.01 on the benign zoo (:mod:`fedleak.benchmarks.benign_zoo`, ordinary models
fedleak was not developed against; ``fedleak detect-eval --quick --open-world``, 70 variants x 3 clients). Measured
there, thresholds unchanged: the chain of all six refused 22.9% of the checks (16 of 70 variants: pruned, LoRA,
zero-init ViT, Net2Net-widened, Adam + L2 trained models, a full-width MobileNetV2); degenerate_rows 18.6%,
parallel_rows 5.7%, mirrored_rows 2.9%, architecture, sign_imbalance and batch_dominance 0. :data:`FIRST_CONTACT`
refused none (0 of 210 checks). What
the demotion costs, in a reduced ``detect-eval --quick --first-contact`` (6 models, round 1, 4 clients): the
default chain still refuses LOKI, Robbing the Fed's inserted imprint (1.00; its re-used layer, 0.67 on the FC-NN,
passes), SEER and the text-embedding attack, and no longer refuses class and feature fishing, curious kernels,
input forwarding, Decepticons, model inconsistency or trap weights (1.00 before, 0.00 after). Their leakage is left
to a guard on the client's own update, not to recognising the attacker's form. :data:`SIGNATURES` still builds the
chain before demotion (``first_contact_chain(model, names=SIGNATURES)``).
The leakage self-audit (:mod:`fedleak.detection.self_audit`) is not in the chain: a benign FC-NN's first layer gives
away 28-34% of a 32-sample batch by itself (passive leakage, measured), as much as trap weights.
:func:`first_contact_chain` builds a chain as a :class:`DetectorChain` (hence :func:`detector_mod`, the client mod),
and :func:`fedleak.flower.detector_mod.named_detectors` takes :data:`FIRST_CONTACT` for the Flower mod.
"""
from __future__ import annotations

import torch.nn as nn

from fedleak.detection.chain import (DEMOTED, FIRST_CONTACT, SIGNATURES, ChainSettings, DetectorChain, build_chain,
                                     chain_detectors)

__all__ = ["DEMOTED", "FIRST_CONTACT", "SIGNATURES", "first_contact_chain", "first_contact_detectors"]


def first_contact_detectors(names: tuple[str, ...] = FIRST_CONTACT) -> list:
    """Fresh detectors of ``names`` (default :data:`FIRST_CONTACT`; :data:`SIGNATURES` for the chain before
    demotion)."""
    return chain_detectors(names)


def first_contact_chain(local_model: nn.Module, *, samples: int = 32, refuse: bool = True,
                        names: tuple[str, ...] = FIRST_CONTACT) -> DetectorChain:
    """A :class:`DetectorChain` of ``names`` (default :data:`FIRST_CONTACT`; ``samples`` local samples per check:
    batch_dominance draws its batches from them; the weight signatures do not read them, but the chain checks
    them for NaN)."""
    return build_chain(names, local_model, ChainSettings(samples=samples), refuse=refuse)
