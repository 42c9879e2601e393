"""The settings every experiment records beside its results: the seed every draw derives from
(:mod:`fedleak.seeds`) and the device it computes on (:class:`RunConfig`); the data it reads
(:class:`DataRunConfig`) and the profile it was built by (:class:`ProfiledRunConfig`); the leakage guard's tolerance
where its clients carry the guard (:class:`GuardRunConfig`). Each experiment's config declares its own fields on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fedleak.checks import check_device
from fedleak.detection.leakage_guard import LeakageGuard


@dataclass(kw_only=True)
class RunConfig:
    """Base of the experiments' configs: ``seed`` and ``device`` (checked to exist on this machine, so that a
    config built from Python fails as clearly as ``--device`` on the command line); keyword-only, so a config may
    still begin with fields without defaults."""

    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_device(self.device)


@dataclass(kw_only=True)
class DataRunConfig(RunConfig):
    """A run on one data set: ``dataset`` (a name of :data:`fedleak.data.DATASETS`; a config may declare another
    default) read from ``root`` (None: its standard place)."""

    dataset: str = "bundled"
    root: str | None = None


@dataclass(kw_only=True)
class ProfiledRunConfig(DataRunConfig):
    """A run whose config records the ``profile`` that built it ("full", or the classmethod's name, e.g. "quick"),
    for its report."""

    profile: str = "full"


@dataclass(kw_only=True)
class GuardRunConfig(RunConfig):
    """A run whose clients carry the :class:`~fedleak.detection.leakage_guard.LeakageGuard`, with its
    ``tolerance`` (default: the guard's)."""

    tolerance: float = field(default_factory=lambda: LeakageGuard().tolerance)


def check_counts(config, *names: str) -> None:
    """Each field ``names`` of ``config`` a positive int (not a bool), else a ValueError naming the first that is
    not."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
