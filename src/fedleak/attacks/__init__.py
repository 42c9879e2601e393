"""Attacks on shared updates, looked up by name in ``ATTACKS``."""
from fedleak.registry import Registry

ATTACKS = Registry("attack")
