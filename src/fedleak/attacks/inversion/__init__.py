"""Gradient-inversion attacks (paper 001, Scheliga et al.): one batched optimisation loop (Algorithm 1), gradient
distances, TV prior, analytic label recovery, and the gradient models of the targeted attacks (WIIG, DIA, DPIA,
GPIA, VBIA, PIG, CDIA) registered as presets in :data:`fedleak.attacks.ATTACKS`."""
from fedleak.attacks.inversion.attack import InversionAttack, InversionSecret, invert, recover_labels
from fedleak.attacks.inversion.config import InversionConfig
from fedleak.attacks.inversion.presets import PRESETS

__all__ = ["InversionAttack", "InversionSecret", "invert", "recover_labels", "InversionConfig", "PRESETS"]
