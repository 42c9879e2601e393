"""The two settings every experiment records beside its results: the seed every draw derives from
(:mod:`fedleak.seeds`) and the device it computes on."""
from __future__ import annotations

from dataclasses import dataclass

from fedleak.checks import check_device


@dataclass(kw_only=True)
class RunConfig:
    """Base of the experiments' configs: ``seed`` and ``device`` (checked to exist on this machine, so that a
    config built from Python fails as clearly as ``--device`` on the command line); keyword-only, so a config may
    still begin with fields without defaults."""

    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_device(self.device)
