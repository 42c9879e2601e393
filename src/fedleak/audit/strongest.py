"""Per model and defense, the attacks of the audit's leak questions from strongest to weakest, by a rule read from
what each attack needs and what the defended model holds, never from the model's name.

The rule, in order (a lower tier is stronger):

0. exact recovery of a whole batch: SPEAR (Dimitrov et al. 2024, from a linear layer followed by ReLU) on images,
   DAGER (Petrov et al. 2024, from a transformer's attention gradients) on text;
1. exact recovery of one sample per row of the first fully connected layer: passive extraction (paper 002 §5.1);
2. under FedAvg, the inversion that simulates the client's local steps (Dimitrov et al. 2022); the FedSGD presets
   read a FedAvg update as one gradient;
3. the gradient-inversion presets, ranked by how many of the defended model's mechanisms their gradient model
   mimics (paper 001 §4: dropout masks, bottleneck noise, the pruning mask, DP noise), the fewest mimicked that are
   absent breaking ties (CDIA equals IG on an undefended model); DLG/iDLG's L-BFGS after the Adam presets (paper
   001 §5.2 found IG stronger), and WIIG never (it reads the client's true randomness: a baseline, no attacker).

Whether an attack applies at all is the plan's question (its ``prepare``); this module only orders those that do.
An exact attack that applied is ranked first, but the plan still runs the next ones unless it recovered every
attacked sample (:mod:`fedleak.audit.early_stop`): a rule can be wrong about a model, a measurement cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from fedleak.attacks import PRESETS
from fedleak.defenses import ConvBottleneck, Precode, StochasticDropout, VariationalBottleneck, parse_defenses

FEDAVG_INVERSION = "fedavg_inversion"
EXACT = {"spear": (0, "recovers a whole batch exactly from a linear layer followed by ReLU (SPEAR, Dimitrov et al. "
                      "2024)"),
         "dager": (0, "recovers whole token sequences exactly from the attention gradients (DAGER, Petrov et al. "
                      "2024)"),
         "passive": (1, "recovers one sample per row of the first fully connected layer exactly (paper 002 §5.1)")}
MIMICKED = {"dropout": "optimised", "bottleneck": "optimised", "pruning": ("mask", "known"), "dp": "optimised"}
BASELINES = ("wiig",)  # the client's true randomness: no attacker has it
LBFGS_LAST = 1  # added to the rank of an L-BFGS preset (DLG, iDLG: paper 001 §5.2 found the Adam presets stronger)


@dataclass(frozen=True)
class Ranked:
    """One attack's place: ``tier`` (0 strongest), ``score`` within the tier (lower first) and ``why`` in words."""

    attack: str
    tier: int
    score: tuple
    why: str


def mechanisms(model: nn.Module, defense: str) -> set[str]:
    """What the defended ``model`` does to an update that an inversion's gradient model can mimic: random dropout
    masks, bottleneck noise (PRECODE, CVB), a pruning mask, DP noise."""
    found = set()
    for module in model.modules():
        if isinstance(module, StochasticDropout):
            found.add("dropout")
        if isinstance(module, (VariationalBottleneck, ConvBottleneck, Precode)):
            found.add("bottleneck")
    names = {spec.name for spec in parse_defenses("" if defense == "none" else defense)}
    if "prune" in names:
        found.add("pruning")
    if "dp" in names:
        found.add("dp")
    return found


def preset_mimics(name: str) -> set[str]:
    """The mechanisms inversion preset ``name`` models (its gradient model's options)."""
    config = PRESETS[name]
    return {k for k, modes in MIMICKED.items()
            if getattr(config, k) in ((modes,) if isinstance(modes, str) else modes)}


def rank(attack: str, present: set[str]) -> Ranked | None:
    """Where ``attack`` stands behind a defense whose :func:`mechanisms` are ``present``; ``None`` for an attack
    outside the leak questions' ranking (a manipulation, which question 3 runs in full, or a baseline)."""
    if attack in EXACT:
        tier, why = EXACT[attack]
        return Ranked(attack, tier, (), why)
    if attack == FEDAVG_INVERSION:
        return Ranked(attack, 2, (), "inverts the FedAvg update with the client's local steps simulated (Dimitrov "
                                     "et al. 2022)")
    if attack not in PRESETS or attack in BASELINES:
        return None
    mimics = preset_mimics(attack)
    hit, extra = present & mimics, mimics - present
    lbfgs = PRESETS[attack].optimizer == "lbfgs"
    what = (f"mimics the defense's {', '.join(sorted(hit))}" if hit else
            "mimics nothing of this defense" if present else "the model has no defense to mimic")
    return Ranked(attack, 3 + (LBFGS_LAST if lbfgs else 0), (-len(hit), len(extra), attack),
                  f"gradient inversion; {what}" + (" (L-BFGS, after the Adam presets)" if lbfgs else ""))


def ranked(attacks: list[str], present: set[str]) -> list[Ranked]:
    """The leak-question attacks among ``attacks`` (those that apply), strongest first, behind a defense whose
    :func:`mechanisms` are ``present``."""
    found = [r for r in (rank(a, present) for a in attacks) if r is not None]
    return sorted(found, key=lambda r: (r.tier, r.score))


def strongest_inversion(ranking: list[Ranked]) -> Ranked | None:
    """The first gradient-inversion preset of ``ranking`` (the one a quick audit keeps)."""
    return next((r for r in ranking if r.attack in PRESETS), None)
