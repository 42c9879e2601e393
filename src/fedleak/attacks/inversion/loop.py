"""The one optimisation loop of every gradient-inversion attack (Algorithm 1 of paper 001, with the stopping
rules and learning-rate schedule of §5.2), run for many independent "lanes" (victims x restarts) at once.

Every optimised tensor has the lane as its first dimension and the objective returns one loss per lane, so the
summed loss gives each lane its own gradient. Adam is element-wise, so the lanes stay independent; this loop
keeps a learning rate, a plateau counter, a best state and a stop flag per lane. L-BFGS (DLG) steps all lanes
together on the summed loss. The loop synchronises with the device only every ``check_every`` iterations.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from fedleak.attacks.inversion.config import InversionConfig

Objective = Callable[[dict[str, torch.Tensor]], torch.Tensor]
Projection = Callable[[dict[str, torch.Tensor]], None]

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_REL_IMPROVEMENT = 1e-4  # a loss counts as improved when below best * (1 - 1e-4), as ReduceLROnPlateau's default


@dataclass
class LoopOutcome:
    """The best state per lane (lowest loss seen), that loss ``(L,)``, iterations run per lane, wall time."""

    best: dict[str, torch.Tensor]
    loss: torch.Tensor
    iterations: torch.Tensor
    seconds: float


class _LaneTracker:
    """Per-lane best loss and state, plateau and patience counters, learning rates and stop flags."""

    def __init__(self, state: dict[str, torch.Tensor], config: InversionConfig):
        lanes, device = next(iter(state.values())).shape[0], next(iter(state.values())).device
        self.config = config
        self.best = {k: v.detach().clone() for k, v in state.items()}
        self.best_loss = torch.full((lanes,), float("inf"), device=device)
        self.since_best = torch.zeros(lanes, dtype=torch.long, device=device)
        self.since_decay = torch.zeros(lanes, dtype=torch.long, device=device)
        self.lr = torch.full((lanes,), float(config.lr), device=device)
        self.active = torch.ones(lanes, dtype=torch.bool, device=device)
        self.iterations = torch.zeros(lanes, dtype=torch.long, device=device)

    @torch.no_grad()
    def record(self, loss: torch.Tensor, state: dict[str, torch.Tensor]) -> None:
        """Keep the state of every lane whose ``loss`` (evaluated at ``state``) beats its best."""
        improved = (loss < self.best_loss * (1 - _REL_IMPROVEMENT)) & self.active
        self.best_loss = torch.where(improved, loss.detach(), self.best_loss)
        for key, value in state.items():
            mask = improved.view(-1, *([1] * (value.dim() - 1)))
            self.best[key] = torch.where(mask, value.detach(), self.best[key])
        self.since_best = torch.where(improved, 0, self.since_best)
        self.since_decay = torch.where(improved, 0, self.since_decay)

    @torch.no_grad()
    def tick(self, loss: torch.Tensor) -> None:
        """End of one iteration: count it, decay stalled learning rates, stop finished lanes."""
        cfg = self.config
        self.iterations += self.active
        self.since_best += 1
        self.since_decay += 1
        decay = self.since_decay >= cfg.plateau
        self.lr = torch.where(decay, self.lr * cfg.lr_decay, self.lr)
        self.since_decay = torch.where(decay, 0, self.since_decay)
        done = (loss.detach() < cfg.loss_threshold) | (self.since_best >= cfg.patience) | ~torch.isfinite(loss)
        self.active &= ~done


def _lane_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def optimise(objective: Objective, state: dict[str, torch.Tensor], project: Projection, config: InversionConfig,
             *, signed: tuple[str, ...] = (), check_every: int = 25) -> LoopOutcome:
    """Minimise the per-lane ``objective`` over the tensors of ``state`` (changed in place; each ``(L, ...)``).

    ``project`` runs after every step (box constraints, mask clamping); keys in ``signed`` get the sign of
    their gradient (Inverting Gradients). Returns the best state of each lane."""
    for key, value in state.items():
        value.requires_grad_(True)
    tracker = _LaneTracker(state, config)
    start = time.perf_counter()
    if config.optimizer == "adam":
        _adam(objective, state, project, tracker, signed, check_every)
    else:
        _lbfgs(objective, state, project, tracker, check_every)
    for value in state.values():
        value.requires_grad_(False)
    return LoopOutcome(tracker.best, tracker.best_loss, tracker.iterations, time.perf_counter() - start)


def _adam(objective, state, project, tracker: _LaneTracker, signed, check_every) -> None:
    """Adam (Kingma & Ba 2014) with a learning rate per lane; stopped lanes are frozen."""
    keys = list(state)
    first = {k: torch.zeros_like(state[k]) for k in keys}
    second = {k: torch.zeros_like(state[k]) for k in keys}
    beta1, beta2 = _BETAS
    for step in range(1, tracker.config.max_iterations + 1):
        loss = objective(state)
        grads = torch.autograd.grad(loss.sum(), [state[k] for k in keys])
        tracker.record(loss, state)
        tracker.tick(loss)
        with torch.no_grad():
            correction1, correction2 = 1 - beta1**step, 1 - beta2**step
            rate = tracker.lr * tracker.active
            for key, grad in zip(keys, grads):
                grad = grad.sign() if key in signed else torch.nan_to_num(grad)
                first[key].mul_(beta1).add_(grad, alpha=1 - beta1)
                second[key].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                update = (first[key] / correction1) / ((second[key] / correction2).sqrt() + _ADAM_EPS)
                state[key].sub_(update * _lane_view(rate, update))
            project(state)
        if step % check_every == 0 and not bool(tracker.active.any()):
            break


def _lbfgs(objective, state, project, tracker: _LaneTracker, check_every) -> None:
    """L-BFGS (Liu & Nocedal 1989) on the summed loss of all lanes, as DLG uses it: one iteration is one
    ``step`` of PyTorch's L-BFGS (up to 20 inner iterations, DLG's setting), with a strong-Wolfe line search
    (DLG's plain fixed step diverges easily)."""
    params = list(state.values())
    optimizer = torch.optim.LBFGS(params, lr=tracker.config.lr, max_iter=20, history_size=100,
                                  line_search_fn="strong_wolfe")
    last = {}

    def closure():
        optimizer.zero_grad()
        loss = objective(state)
        tracker.record(loss, state)
        last["loss"] = loss.detach()
        total = loss.sum()
        total.backward()
        return total

    for step in range(1, tracker.config.max_iterations + 1):
        optimizer.step(closure)
        tracker.tick(last["loss"])
        with torch.no_grad():
            project(state)
        if step % check_every == 0 and not bool(tracker.active.any()):
            break
