"""The seeded cells of paper 002's extraction studies (Boenisch et al.): a random batch of the training split, a
model the server prepared with an analytic attack (``passive`` or ``trap_weights``, from :data:`ATTACKS`), the
client's FedSGD update of the batch (through a defense when the study has one) and Eq. 5 read back at the
attack's layer, scored by the one scorer (:mod:`fedleak.cases.batch`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.base import Attack
from fedleak.cases.batch import BatchOutcome, Update, attack_batches
from fedleak.checks import CheckedConfig, count_field
from fedleak.fl.training import GradientFn
from fedleak.models import build_model
from fedleak.models.fcnn import WIDTHS
from fedleak.seeds import run_seed


def seeded_batch(data, size: int, seed: int, device: str | torch.device = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` samples of ``data`` drawn without replacement from ``seed`` (its own generator), on ``device``."""
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]
    if len(index) < size:
        raise ValueError(f"{data.info.name} has {len(data)} samples, fewer than a batch of {size}")
    x, y = (t.to(device) for t in data[index])
    return x, y


@dataclass
class ExtractionCell:
    """One batch ``(x, y)``, the analytic ``attack``, the model the server ``sent`` and the ``secret`` it kept
    (a :class:`fedleak.attacks.analytic.LayerSecret` or a text secret: the layer it reads)."""

    x: torch.Tensor
    y: torch.Tensor
    attack: Attack
    sent: nn.Module
    secret: Any

    def reads(self) -> tuple[str, str]:
        """The parameters the server reads: the weight and bias of the extraction layer (Eq. 5)."""
        return f"{self.secret.layer}.weight", f"{self.secret.layer}.bias"

    def run(self, *, gradient_fn: GradientFn | None = None, update_defense: Callable[[Update], Update] | None = None,
            scoring: dict | None = None, device: str | torch.device = "cpu") -> BatchOutcome:
        """The client's update of the batch (``gradient_fn``, ``update_defense``: its defense, if any), read back
        by the attack and scored (``scoring``: options of :func:`fedleak.cases.scoring.score`)."""
        (outcome,) = attack_batches(self.attack, self.sent, self.secret, [(self.x, self.y)], gradient_fn=gradient_fn,
                                    update_defense=update_defense, reads=self.reads(), scoring=scoring, device=device)
        return outcome


def extraction_cell(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, *,
                    device: str | torch.device = "cpu", **options) -> ExtractionCell:
    """The server prepares ``model`` with ``ATTACKS.build(attack, **options)`` for the batch ``(x, y)``."""
    built = ATTACKS.build(attack, **options)
    sent, secret = built.prepare(model.to(device), AttackContext(tuple(x.shape[1:]), device=device))
    return ExtractionCell(x, y, built, sent, secret)


@dataclass
class TrapStudyConfig(CheckedConfig):
    """What every trap-weights defense study (§8.4, §9) shares, i.e. what :func:`trap_cell` reads: ``runs``
    seeded cells per setting, each a batch of ``batch_size`` through ``model`` with trap weights of
    ``scale_factor`` (Algorithm 1; 0.7 is the paper's best s for MNIST, Table 5)."""

    dataset: str = "fashion_mnist"
    root: str | None = None
    model: str = "fcnn"
    model_options: dict = field(default_factory=lambda: {"widths": WIDTHS})  # Table 7's FC-NN
    batch_size: int = count_field(100)
    scale_factor: float = 0.7
    runs: int = count_field(10)
    seed: int = 0
    device: str = "cpu"
    profile: str = "full"


def trap_cell(data, config: TrapStudyConfig, run: int) -> ExtractionCell:
    """One seeded cell of the trap-weights defense studies (§9): a random batch of ``config.batch_size`` and a
    fresh ``config.model`` with trap weights of ``config.scale_factor`` (Algorithm 1), both from the seed of run
    ``run``, on ``config.device``."""
    seed = run_seed(config.seed, run)
    torch.manual_seed(seed)
    x, y = seeded_batch(data, config.batch_size, seed, config.device)
    model = build_model(config.model, data.info.input_shape, data.info.num_classes, **config.model_options)
    return extraction_cell(model, x, y, "trap_weights", scale_factor=config.scale_factor, seed=seed,
                           device=config.device)


def vanishing_point(settings, values) -> float | None:
    """The smallest setting of an ascending grid (a DP sigma, a pruning rate) from which ``values`` (one per
    setting) are 0 at every larger setting; ``None`` when the largest setting still leaks."""
    found = None
    for setting, value in zip(reversed(settings), reversed(values)):
        if value > 0:
            break
        found = setting
    return found
