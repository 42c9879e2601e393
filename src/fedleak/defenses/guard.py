"""The leakage guard (:mod:`fedleak.detection.leakage_guard`) as a client defense, ``guard`` in
:data:`fedleak.defenses.DEFENSES`: ``fedleak audit --defense guard`` (and every ``--defense`` combination) prices it
and measures what it leaves an attacker, beside the other defenses."""
from __future__ import annotations

from fedleak.defenses import DEFENSES
from fedleak.defenses.defended import Defended


@DEFENSES.register("guard")
def add_leakage_guard(target: Defended, tolerance: float = 0.3) -> Defended:
    """Zero the rows of the client's update whose readout (paper 002 Eq. 5, row differences) reproduces one of its
    samples within ``tolerance`` (default 0.3, the guard's own; see its module)."""
    from fedleak.detection.leakage_guard import LeakageGuard, leakage_guard_mod  # the detection package is heavy

    target.mods = (*target.mods, leakage_guard_mod(LeakageGuard(tolerance=tolerance)))
    return target
