"""The settings every experiment records beside its results: the seed every draw derives from
(:mod:`fedleak.seeds`) and the device it computes on (:class:`RunConfig`); the data it reads
(:class:`DataRunConfig`) and the profile it was built by (:class:`ProfiledRunConfig`); the leakage guard's tolerance
where its clients carry the guard (:class:`GuardRunConfig`). Each experiment's config declares its own fields on top.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fedleak.checks import CheckedConfig, check_device
from fedleak.detection.leakage_guard import LeakageGuard


@dataclass(kw_only=True)
class RunConfig(CheckedConfig):
    """Base of the experiments' configs: ``seed`` and ``device`` (checked to exist on this machine, so that a
    config built from Python fails as clearly as ``--device`` on the command line); keyword-only, so a config may
    still begin with fields without defaults. Each field declared with a check (:func:`fedleak.checks.checked`,
    ``count_field``, ``choice_field``, ...) is checked when the config is built (:class:`CheckedConfig`), named by
    its field name."""

    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_device(self.device)
        super().__post_init__()


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
