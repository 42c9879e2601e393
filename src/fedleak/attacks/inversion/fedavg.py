"""FedAvg inversion (Dimitrov et al., "Data Leakage in Federated Averaging", TMLR 2022, §4): the server observes a
client's FedAvg update (its weights after E local epochs of mini-batch SGD with a known learning rate, minus the
weights it was sent) and optimises dummy inputs by simulating the client's local training on them, differentiating
through the unrolled SGD steps (``torch.func``), so that the simulated update matches the observed one (the
distance of the preset, cosine for IG's settings, eq. 3), plus the image priors of the one inversion loop (TV, the
batch-norm statistics prior).

Epoch-order invariance (§4.2): the client sees the same N samples in every epoch, in a new random order. By
default (``epoch_prior="shared"``) one dummy image per sample serves every epoch (the prior as a hard constraint;
deviation). ``epoch_prior="matched"`` is the paper's: one reconstruction per epoch, matched across epochs by optimal
assignment and pulled together (:mod:`fedleak.attacks.inversion.epoch_prior`). With shared images the order is unknown:
the first epoch's order is the identity (the dummy samples are free, so any order is as good), and each later
epoch's order is averaged over ``orders`` random permutations, i.e. the simulated update is the mean of ``orders``
simulations (as the paper averages over orders). Labels: the batch's label counts read off the output layer's
update by the paper's label-count recovery (§4.3, :func:`fedleak.attacks.inversion.labels.fedavg_label_counts`:
Geng et al.'s estimate at every local step, the unobserved weights interpolated), dealt round-robin over the first
epoch's mini-batches (:func:`dealt`); which sample of the client's first epoch carries which label is unknown to
the server, so the batches' label mix is a guess; labels are not optimised here.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.func import functional_call, grad, vmap

from fedleak.attacks.base import Knowledge, LocalTraining, Observed, Reconstruction
from fedleak.attacks.inversion.attack import _check_names, bn_targets, proxy_secret
from fedleak.attacks.inversion.bn_prior import BatchNormPrior, BatchNormTargets, batch_norm_layers
from fedleak.attacks.inversion.config import InversionConfig
from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.attacks.inversion.dummy_gradients import attack_copy
from fedleak.attacks.inversion.epoch_prior import check_epoch_prior, epoch_schedule, matched_mean, matched_prior
from fedleak.attacks.inversion.labels import fedavg_label_counts
from fedleak.attacks.inversion.loop import optimise
from fedleak.attacks.inversion.presets import IG, short_run
from fedleak.attacks.inversion.regularizers import total_variation
from fedleak.checks import check_finite, check_number
from fedleak.fl.training import auxiliary_modules, sample_losses
from fedleak.models.anatomy import trace
from fedleak.seeds import run_seed

# the matched epoch prior's weight (per-pixel mean squared distance), picked from a sweep on 4 images, 2 epochs
# of 2 steps, 150 iterations (tests/attacks/inversion): 17.2-18.3 dB at 1e-3..0.3 (18.3 at 0.1), 16.1 at 1, 14.5 at 10
EPOCH_WEIGHT = 0.1
DUMMY_INPUTS = 64  # random inputs on which the label-count estimate reads the model's mean softmax


def local_schedule(samples: int, local: LocalTraining, orders: int, generator: torch.Generator
                   ) -> list[list[torch.Tensor]]:
    """The mini-batches (index tensors into the N samples) of each simulated run: ``orders`` runs, each epoch
    after the first in a random order (the first in the identity order); ``local.steps`` bounds the steps."""
    runs = []
    for _ in range(orders):
        batches = []
        for epoch in range(local.epochs if local.steps is None else 1):
            order = torch.arange(samples) if epoch == 0 else torch.randperm(samples, generator=generator)
            batches += list(order.split(local.batch_size))
        runs.append(batches[:local.steps] if local.steps is not None else batches)
    return runs


def dealt(samples: int, batch_size: int) -> torch.Tensor:
    """An order of N sorted labels that deals them round-robin over the first epoch's mini-batches (the client's
    shuffle spreads a class over its batches; sorted labels in order would put each class in one batch):
    ``labels[dealt(...)]`` puts sorted label k in batch k mod T."""
    slots = [list(range(start, min(start + batch_size, samples))) for start in range(0, samples, batch_size)]
    owner = [0] * samples
    batch, k = 0, 0
    while k < samples:
        if slots[batch]:
            owner[slots[batch].pop(0)] = k
            k += 1
        batch = (batch + 1) % len(slots)
    return torch.tensor(owner)


class LocalTrainingSimulator:
    """``simulate(x (L, N, *input), y (L, N))`` -> ``name -> (L, *shape)``: the mean over the schedule's runs of the
    weights after the client's local SGD steps on each lane's dummy samples minus the starting weights
    (Dimitrov et al. Algorithm 1's simulation), differentiable in ``x`` through every step."""

    def __init__(self, model: nn.Module, names: list[str], lr: float, runs: list[list[torch.Tensor]]):
        parameters = dict(model.named_parameters())
        self.model, self.names, self.lr, self.runs = model, names, lr, runs
        self.auxiliary = auxiliary_modules(model)
        self._weights = {n: parameters[n].detach() for n in names}
        self._constants = {n: p.detach() for n, p in parameters.items() if n not in names}
        self._constants.update(dict(model.named_buffers()))
        self._step = grad(self._batch_loss)
        self._vmapped = vmap(self._one_lane, randomness="different")

    def _batch_loss(self, weights, x, y):
        outputs = functional_call(self.model, {**weights, **self._constants}, (x,))
        return sample_losses(self.model, outputs, y, modules=self.auxiliary).mean()

    def _one_lane(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        total = {n: torch.zeros_like(w) for n, w in self._weights.items()}
        for batches in self.runs:
            weights = dict(self._weights)
            for index in batches:
                step = self._step(weights, x[index], y[index])
                weights = {n: w - self.lr * step[n] for n, w in weights.items()}
            total = {n: total[n] + weights[n] - self._weights[n] for n in total}
        return {n: t / len(self.runs) for n, t in total.items()}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._vmapped(x, y)


def invert_fedavg(config: InversionConfig, model: nn.Module, observed: Observed, knowledge: Knowledge, *,
                  orders: int = 1, seed: int = 0, device="cpu", proxy: BatchNormTargets | None = None,
                  labels: torch.Tensor | None = None, epoch_prior: str = "shared",
                  epoch_weight: float = 0.0) -> Reconstruction:
    """Reconstruct the N samples behind each observed FedAvg update (Dimitrov et al. 2022, Algorithm 1) with the
    optimisation settings of ``config`` (restarts, distance, TV, batch-norm prior, schedule). Returns ``V * N``
    images, ``meta["source"]`` the update each was read from. ``labels`` ``(V, N)``: each victim's labels in its
    first epoch's order, given instead of recovered (a diagnostic: it separates label errors from the
    optimisation's; a real server has only the label counts, :func:`fedavg_label_counts`). ``epoch_prior``
    ``"matched"``: one reconstruction per epoch, pulled together with ``epoch_weight`` (§4.2,
    :mod:`fedleak.attacks.inversion.epoch_prior`); ``"shared"``: one image per sample for every epoch."""
    check_epoch_prior(epoch_prior, epoch_weight)
    if observed.kind != "delta":
        raise ValueError(f"fedavg_inversion inverts FedAvg updates (deltas); it observed {observed.kind}s")
    local = knowledge.local_training
    if local is None:
        raise ValueError("fedavg_inversion needs the clients' local training (Knowledge.local_training: "
                         "lr, batch size, epochs or steps)")
    counts = set(observed.num_examples)
    if len(counts) != 1:
        raise ValueError(f"fedavg_inversion inverts updates of one size; observed {sorted(counts)} samples")
    seen = counts.pop()
    samples = seen if local.steps is not None else seen // local.epochs
    if samples < 1 or (local.steps is None and samples * local.epochs != seen):
        raise ValueError(f"an update of {seen} samples seen is not {local.epochs} epochs over one data set")
    device = torch.device(device)
    sent = observed.sent[0]
    attacked = attack_copy(sent, device)
    parameters = dict(attacked.named_parameters())
    update = {n: t.detach().to(device=device, dtype=torch.float32) for n, t in observed.updates.items()}
    check_finite(update, "observed update")
    names = _check_names(attacked, {n: t for n, t in update.items() if n in parameters})
    victims, restarts = len(observed.sources), config.restarts
    lanes = victims * restarts
    lane_victim = torch.arange(victims, device=device).repeat(restarts)
    generator = torch.Generator().manual_seed(seed)
    low, high = knowledge.input_range
    copies = local.epochs if epoch_prior == "matched" and local.steps is None else 1
    runs = local_schedule(samples, local, orders, generator) if copies == 1 else \
        epoch_schedule(samples, copies, local.batch_size)
    steps = sum(len(batches) for batches in runs) // len(runs)
    targets = bn_targets(config, sent, attacked, update=update, steps=steps, proxy=proxy)
    prior = None if targets is None else BatchNormPrior(attacked, targets, lane_victim)

    labelled = copy.deepcopy(sent).eval() if batch_norm_layers(sent) else sent  # traced on one input
    layer = trace(labelled, input_shape=knowledge.input_shape).output_layer().name
    if f"{layer}.weight" not in update:
        raise ValueError(f"the update of the output layer {layer!r} was not observed; labels are unknown")
    if labels is None:
        own = torch.Generator().manual_seed(run_seed(seed, 1))  # given labels leave the dummy images' draw alike
        dummy = low + (high - low) * torch.rand((DUMMY_INPUTS, *knowledge.input_shape), generator=own)
        counts = torch.stack([fedavg_label_counts(labelled, layer, {n: t[v] for n, t in update.items()}, local,
                                                  samples, dummy.to(device)) for v in range(victims)])
        ordered = torch.arange(counts.shape[1], device=device)
        labels = torch.stack([ordered.repeat_interleave(c) for c in counts])[:, dealt(samples, local.batch_size)]
    elif labels.shape != (victims, samples):
        raise ValueError(f"fedavg_inversion: given labels of shape {tuple(labels.shape)}, expected "
                         f"({victims}, {samples}) (each victim's samples in its first epoch's order)")
    labels = labels.to(device)
    simulate = LocalTrainingSimulator(attacked, names, local.lr, runs)
    target = {n: update[n][lane_victim] for n in names}
    distance = DISTANCES.get(config.distance)(target, names)
    state = {"x": torch.randn((lanes, copies * samples, *knowledge.input_shape), generator=generator).to(device)}
    lane_labels = labels[lane_victim]
    copy_labels = lane_labels.repeat(1, copies)

    def objective(current: dict[str, torch.Tensor]) -> torch.Tensor:
        x = current["x"]
        loss = distance(simulate(x, copy_labels))
        if copies > 1 and epoch_weight:
            loss = loss + epoch_weight * matched_prior(x.view(lanes, copies, samples, -1), lane_labels)
        if config.tv_weight:
            loss = loss + config.tv_weight * total_variation(x.flatten(0, 1)).view(lanes, -1).mean(1)
        if prior is not None:
            loss = loss + config.bn_weight * prior(x)
        return loss

    def project(current: dict[str, torch.Tensor]) -> None:
        if config.boxed:
            current["x"].clamp_(low, high)

    outcome = optimise(objective, state, project, config, signed=("x",) if config.signed else ())
    best_restart = outcome.loss.view(restarts, victims).nan_to_num(float("inf")).argmin(0)
    chosen = best_restart * victims + torch.arange(victims, device=device)
    best = outcome.best["x"][chosen].view(victims, copies, samples, -1)
    best = matched_mean(best, labels) if copies > 1 else best[:, 0]
    images = best.clamp(low, high).reshape(victims * samples, *knowledge.input_shape)
    meta = {"loss": outcome.loss[chosen], "iterations": outcome.iterations[chosen],
            "source": torch.arange(victims, device=device)}
    return Reconstruction(images, labels.reshape(-1), meta={k: v.repeat_interleave(samples) for k, v in meta.items()},
                          info={"seconds": outcome.seconds, "bn_prior": "none" if targets is None else targets.mode,
                                "local_steps": steps, "orders": orders, "epoch_prior": epoch_prior})


@dataclass(frozen=True)
class FedAvgInversion:
    """FedAvg inversion (Dimitrov et al. 2022) of an honest-but-curious server: it sends the model unchanged and
    inverts each observed FedAvg update by simulating the client's local epochs (:func:`invert_fedavg`)."""

    config: InversionConfig
    orders: int = 1
    seed: int = 0
    epoch_prior: str = "shared"
    epoch_weight: float = 0.0

    def __post_init__(self):
        check_number("fedavg_inversion orders", self.orders, low=1, integer=True)
        check_epoch_prior(self.epoch_prior, self.epoch_weight)

    @property
    def name(self) -> str:
        return "fedavg_inversion"

    def prepare(self, model: nn.Module, context=None) -> tuple[nn.Module, BatchNormTargets | None]:
        return model, proxy_secret(self.config, model, context)

    def reconstruct(self, observed: Observed, secret: BatchNormTargets | None, knowledge: Knowledge, *,
                    device="cpu") -> Reconstruction:
        return invert_fedavg(self.config, observed.sent[0], observed, knowledge, orders=self.orders,
                             seed=self.seed, device=device, proxy=secret, epoch_prior=self.epoch_prior,
                             epoch_weight=self.epoch_weight)


def fedavg_inversion(*, iterations: int | None = None, seed: int = 0, orders: int = 1, restarts: int = 1,
                     distance: str = "l2", tv_weight: float = IG.tv_weight, bn_prior: str = IG.bn_prior,
                     bn_weight: float = IG.bn_weight, epoch_prior: str = "shared",
                     epoch_weight: float = EPOCH_WEIGHT) -> FedAvgInversion:
    """FedAvg inversion (Dimitrov et al. 2022): simulates the client's local epochs and mini-batches, one image
    per sample across epochs, ``orders`` random epoch orders averaged. Optimisation: IG's settings (paper 001
    §5.2) but the L2 distance (measured on 2-step updates of 4 images at 16x16, true labels: 16.9 and 13.3 dB
    with L2, 13.9 and 11.4 dB with cosine), a short budget of ``iterations``
    (:func:`fedleak.attacks.inversion.presets.short_run`). ``epoch_prior="matched"``: the paper's prior instead,
    one reconstruction per epoch pulled together with ``epoch_weight`` (§4.2)."""
    config = IG.with_(name="fedavg_inversion", restarts=restarts, distance=distance, tv_weight=tv_weight,
                      bn_prior=bn_prior, bn_weight=bn_weight)
    return FedAvgInversion(config if iterations is None else short_run(config, iterations), orders, seed,
                           epoch_prior, epoch_weight)
