"""Client-side defenses against gradient inversion (paper 001 §3.4): Dropout, DP-SGD, gradient pruning and the
privacy modules PRECODE and CVB, each registered by name in :data:`DEFENSES` and combined with
:func:`apply_defenses` (``"dropout,dp,prune,cvb"``). Random defense modules follow the protocol of
:mod:`fedleak.models.stochastic`, so attacks can substitute their own draws.
"""
from __future__ import annotations

from fedleak.registry import Registry

DEFENSES: Registry = Registry("defense", fixed=("target",))

from fedleak.defenses import bottleneck, dp, dropout, guard, pruning  # noqa: E402,F401  (registration)
from fedleak.defenses.bottleneck import ConvBottleneck, Precode, VariationalBottleneck  # noqa: E402
from fedleak.defenses.compose import DefenseSpec, apply_defenses, defend, parse_defenses  # noqa: E402
from fedleak.defenses.dp import DPSGD, DPAccountant, dp_epsilon, dp_gradient_fn, privatize  # noqa: E402
from fedleak.defenses.dropout import StochasticDropout  # noqa: E402
from fedleak.defenses.pruning import prune_gradients, pruning_mod  # noqa: E402
from fedleak.models.stochastic import (StochasticModule, last_draws, overridden,  # noqa: E402
                                         stochastic_modules)

__all__ = [
    "DEFENSES", "ConvBottleneck", "Precode", "VariationalBottleneck", "DefenseSpec", "apply_defenses", "defend",
    "parse_defenses", "DPSGD", "DPAccountant", "dp_epsilon", "dp_gradient_fn", "privatize", "StochasticDropout",
    "prune_gradients", "pruning_mod", "StochasticModule", "last_draws", "overridden", "stochastic_modules",
]
