"""PAIRS: QBI's biases with weights searched on data of the client's own distribution (Nowak et al., "QBI:
Quantile-based Bias Initialization for Efficient Private Data Reconstruction in Federated Learning", 2024,
arXiv:2406.18745, the algorithm it names PAIRS; the paper's text is not among /work/shared/papers, so this follows
its description: a random search over each row's weights, judged by the row's activation pattern on the server's
sample of the target domain, on top of QBI's quantile biases).

QBI (:mod:`fedleak.attacks.malicious.qbi`) makes every row fire for a share 1/B of the data, but its random rows
may fire for the *same* inputs: two rows that isolate one input read it twice and leave another one unread. PAIRS
draws ``candidates`` random weight vectors per row, gives each QBI's bias on the public sample (the ``1 - 1/B``
quantile of its pre-activation), and keeps the one whose active public points the rows chosen so far cover least
(the sum, over the points it fires for, of how many earlier rows fire for them), so the N rows spread their 1/B
slices over the data's distribution. The client's batch is drawn from that distribution, not from the sample, so
the gain is measured on held-out data (tests, ``fedleak reproduce qbi``). Readout as QBI (Eq. 5 per row).
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import torch

from fedleak.attacks.malicious.qbi import QbiAttack, QbiConfig
from fedleak.checks import check_number


@dataclass
class PairsConfig(QbiConfig):
    """QBI's options (:class:`QbiConfig`) and ``candidates``: the random weight vectors tried per row."""

    candidates: int = 32

    def __post_init__(self):
        super().__post_init__()
        check_number("PAIRS candidates", self.candidates, low=1, integer=True)


def searched_weights(features: torch.Tensor, rest: torch.Tensor, batch_size: int, candidates: int, std: float,
                     generator: torch.Generator) -> torch.Tensor:
    """PAIRS' weights (N, C), row by row: of ``candidates`` N(0, std) draws, the one whose QBI-biased activation
    on the public ``features`` (P, C) (plus ``rest`` (P, N), what row i's other columns add) overlaps least with
    the rows before it. ``candidates = 1`` is QBI."""
    points, width = features.shape
    rows = rest.shape[1]
    features = features.to(torch.float64)
    cover = features.new_zeros(points)  # how many chosen rows fire for each public point
    share = max(1, round(points / batch_size))  # QBI's bias: a row fires for the top P/B public points
    miss = 1.0 - (1.0 - 1.0 / batch_size) ** (batch_size - 1)  # a row firing for x misses it (a batchmate fires too)
    chosen = features.new_zeros(rows, width)
    for row in range(rows):
        draws = std * torch.randn(candidates, width, generator=generator, dtype=torch.float64)
        pre = features @ draws.T + rest[:, row:row + 1].to(features)  # (P, K)
        fires = torch.zeros_like(pre, dtype=torch.bool).scatter_(0, pre.topk(share, dim=0).indices, True)
        best = int(((miss ** cover) @ fires.to(cover)).argmax())  # the largest gain in expected recall
        chosen[row] = draws[best]
        cover += fires[:, best].to(cover)
    return chosen


class PairsAttack(QbiAttack):
    """PAIRS (module docstring): QBI whose rows' weights are searched on the public sample."""

    name = "pairs"
    config_type = PairsConfig

    def row_weights(self, config: PairsConfig, features: torch.Tensor, rest: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
        return searched_weights(features, rest, config.batch_size, config.candidates, config.std, generator)


def pairs(**options) -> PairsAttack:
    """PAIRS: QBI's quantile biases with weights searched so the rows fire for different inputs (Nowak et al.
    2024)."""
    return PairsAttack(**options)


pairs.__signature__ = inspect.Signature([  # the registry reads the options from the signature
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default) for f in dataclasses.fields(PairsConfig)])
