"""One formula for every derived seed, so that a run's randomness depends only on its seed and not on the order
in which clients, rounds or experiment cells are visited."""
from __future__ import annotations

import torch

# Streams separate independent uses of the same (run, client, round): local training, the detectors' sample.
TRAINING, DETECTION = 0, 7_919


def derived_seed(seed: int, client: int = 0, round: int = 0, stream: int = TRAINING) -> int:
    """The seed of ``client`` in ``round`` of a run seeded ``seed``, for one ``stream`` of randomness."""
    return seed * 1_000_003 + client * 10_007 + round + stream


def run_seed(seed: int, run: int) -> int:
    """The seed of repetition ``run`` of an experiment cell in a run seeded ``seed`` (the reproduction tables)."""
    return seed * 100_003 + run


def generator(seed: int, client: int = 0, round: int = 0, stream: int = TRAINING) -> torch.Generator:
    """A CPU generator seeded by :func:`derived_seed`."""
    return torch.Generator().manual_seed(derived_seed(seed, client, round, stream))
