"""The guarded client: the first-contact chain before training, the leakage guard after it.

:data:`GUARDED` names what such a client runs, in order: the detectors of :data:`FIRST_CONTACT` (refuse a model
that carries a manipulation's signature) and then ``leakage_guard`` (:mod:`fedleak.detection.leakage_guard`: zero
whatever rows of the update still read out one local sample, whatever the weights look like). The guard is an
update defense, not a detector: it needs the update, which exists only after training, so it cannot be a member
of a :class:`DetectorChain` (which judges the received model before training); :func:`guarded_mods` gives the two
client mods in order. :data:`FIRST_CONTACT` itself is left as it is.
"""
from __future__ import annotations

import torch.nn as nn

from fedleak.detection.chain import GUARDED, detector_mod
from fedleak.detection.first_contact import first_contact_chain
from fedleak.detection.leakage_guard import GUARD_KEY, LeakageGuard, leakage_guard_mod
from fedleak.fl.client import ClientMod

assert GUARDED[-1] == GUARD_KEY  # the named chain (detection/chain.py) ends with the guard


def guarded_mods(local_model: nn.Module, *, samples: int = 32, guard: LeakageGuard | None = None
                 ) -> tuple[ClientMod, ClientMod]:
    """The client mods of :data:`GUARDED`, outermost first: the first-contact chain (refusing, ``samples`` local
    samples per check) and the leakage guard."""
    return detector_mod(first_contact_chain(local_model, samples=samples)), leakage_guard_mod(guard)
