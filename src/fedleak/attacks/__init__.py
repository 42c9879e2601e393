"""Attacks on shared updates, looked up by name in ``ATTACKS``."""
from fedleak.registry import Registry

ATTACKS = Registry("attack")

from fedleak.attacks import inversion  # noqa: E402,F401  (registers the inversion presets)
