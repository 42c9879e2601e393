"""Batches of one client under one attack, without a federation: the cells of paper 002's tables (one batch, one
FedSGD gradient, Eq. 5 at one layer) and of B = 1 victim studies.

The server has prepared what it sends (``attack.prepare``: the model itself, or a manipulated one, and its secret).
Each batch gives one update, computed as the client computes it: its FedSGD gradient
(:func:`fedleak.fl.training.batch_gradients`, the client's default, or a defense's gradient function such as
DP-SGD), then its update defense (such as pruning). The server observes the updates (:class:`Observed`, one row per
batch), the attack reads them back (``attack.reconstruct``) and the one scorer (:func:`fedleak.cases.scoring.score`)
scores each batch's reconstruction against that batch, which travels beside the update for scoring only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Sequence

import torch
import torch.nn as nn

from fedleak.attacks.base import Attack, Knowledge, Observed, Reconstruction, stack_updates
from fedleak.cases.scoring import PointScores, point_scores, score
from fedleak.fl.training import GradientFn, batch_gradients
from fedleak.metrics.extraction import DEFAULT_TOLERANCE

Update = dict[str, torch.Tensor]


@dataclass
class BatchOutcome:
    """One batch's ``update`` as the server observed it, the attack's ``reconstruction`` from it, its ``scores``
    against the batch ``truth`` (inputs, labels)."""

    update: Update
    reconstruction: Reconstruction
    scores: dict
    truth: tuple[torch.Tensor, torch.Tensor]
    scoring: Mapping[str, Any] = field(default_factory=dict)

    def points(self) -> PointScores:
        """Per input of the batch: recovered exactly, its best candidate and that candidate's PSNR."""
        return point_scores(self.reconstruction, self.truth[0],
                            tolerance=self.scoring.get("tolerance", DEFAULT_TOLERANCE),
                            data_range=self.scoring.get("data_range", 1.0))

    def shown(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(inputs, best candidate of each in [0, 1], its PSNR)``: what a figure shows of this batch."""
        points, x = self.points(), self.truth[0]
        return x, points.shown(self.reconstruction.inputs, x).nan_to_num().clamp(0, 1), points.psnr


def client_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, gradient_fn: GradientFn | None = None,
                  update_defense: Callable[[Update], Update] | None = None,
                  reads: Collection[str] | None = None) -> Update:
    """A FedSGD client's update of the batch ``(x, y)`` on ``model``: ``gradient_fn`` (default: the plain mean
    gradient, :func:`fedleak.fl.training.batch_gradients`), then ``update_defense``; ``reads``: the parameter names
    the server reads (only those are computed, or kept; the same numbers as in the whole update)."""
    if gradient_fn is None:
        update = batch_gradients(model, x, y, only=reads)
    else:
        update = gradient_fn(model, x, y)
    if update_defense is not None:
        update = update_defense(update)
    if reads is not None:
        missing = sorted(set(reads) - set(update))
        if missing:
            raise KeyError(f"the client's update has no {', '.join(missing)}")
        update = {name: update[name] for name in update if name in reads}
    return update


def attack_batches(attack: Attack, sent: nn.Module, secret: Any,
                   batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *, gradient_fn: GradientFn | None = None,
                   update_defense: Callable[[Update], Update] | None = None, reads: Collection[str] | None = None,
                   knowledge: Knowledge | None = None, scoring: Mapping[str, Any] | None = None,
                   device: str | torch.device = "cpu") -> list[BatchOutcome]:
    """Each batch of ``batches`` through the client (:func:`client_update` on the ``sent`` model), all the updates
    observed in one round and read back by ``attack`` with its ``secret``; one :class:`BatchOutcome` per batch,
    scored with ``scoring`` (options of :func:`fedleak.cases.scoring.score`, e.g. ``near_psnr``, ``paired``).
    ``knowledge``: what the server knows besides the updates (default: the inputs' shape)."""
    if not batches:
        raise ValueError("attack_batches needs at least one batch")
    scoring = dict(scoring or {})
    updates = [client_update(sent, x.to(device), y.to(device), gradient_fn=gradient_fn,
                             update_defense=update_defense, reads=reads) for x, y in batches]
    observed = Observed(stack_updates(updates), "gradient", tuple(range(len(batches))),
                        tuple(len(y) for _, y in batches), (sent,) * len(batches))
    knowledge = knowledge or Knowledge(input_shape=tuple(batches[0][0].shape[1:]))
    reconstruction = attack.reconstruct(observed, secret, knowledge, device=device)
    source = reconstruction.meta.get("source")
    outcomes = []
    for index, (update, (x, y)) in enumerate(zip(updates, batches)):
        own = reconstruction if source is None else reconstruction.select(source == index)
        x, y = x.to(device), y.to(device)
        outcomes.append(BatchOutcome(update, own, score(own, x, y, **scoring), (x, y), scoring))
    return outcomes
