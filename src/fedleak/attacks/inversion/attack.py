"""The uniform call of every gradient-inversion attack: ``prepare`` (the model unchanged; the dummy data's seed and
the batch-norm statistics of the server's public data as the secret) and ``reconstruct(observed, secret,
knowledge)`` (:func:`invert`).

All victims (and restarts) are lanes of one batched optimisation (:mod:`fedleak.attacks.inversion.loop`): one
batched dummy-gradient computation (:class:`fedleak.attacks.inversion.dummy_gradients.LaneGradients`), one
distance and one backward pass per iteration for all of them.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Knowledge, Observed, Reconstruction, nothing_to_reconstruct, zero_rows
from fedleak.attacks.inversion.config import InversionConfig
from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.attacks.inversion.bn_prior import (BatchNormPrior, BatchNormTargets, batch_norm_layers,
                                                inferred_targets, proxy_targets, running_targets)
from fedleak.attacks.inversion.dummy_gradients import LaneBatchGradients, LaneGradients, attack_copy
from fedleak.attacks.inversion.gradient_models import build_gradient_model
from fedleak.attacks.inversion.labels import batch_labels, idlg_labels
from fedleak.attacks.inversion.loop import optimise
from fedleak.attacks.inversion.presets import DESCRIPTIONS, PRESETS, short_run
from fedleak.attacks.inversion.regularizers import total_variation
from fedleak.checks import check_finite
from fedleak.models.anatomy import trace


@dataclass(frozen=True)
class InversionSecret:
    """What an inversion keeps at ``prepare``: the ``seed`` of its dummy data (the round's, unless the attack was
    given its own) and the batch-norm statistics of the server's public data (``proxy``, see :func:`proxy_secret`)."""

    seed: int = 0
    proxy: BatchNormTargets | None = None


@dataclass(frozen=True)
class InversionAttack:
    """A gradient-inversion attack of an honest-but-curious server (paper 001 Algorithm 1; Algorithm 2 for
    ``cdia``): it sends the model unchanged and inverts every observed update, all of them lanes of one batched
    optimisation, each observed update taken as one victim's gradient of ``num_examples`` samples (a FedAvg
    delta as :func:`delta_as_gradient`); ``seed`` seeds the dummy data (``None``: the round's seed, from the
    :class:`fedleak.attacks.base.AttackContext`). Its points are paired: point i is the reconstruction of the
    i-th sample of its update (``Reconstruction.paired``)."""

    config: InversionConfig
    seed: int | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def prepare(self, model: nn.Module, context=None) -> tuple[nn.Module, InversionSecret]:
        seed = self.seed if self.seed is not None else (0 if context is None else context.seed)
        return model, InversionSecret(seed, proxy_secret(self.config, model, context))

    def reconstruct(self, observed: Observed, secret: InversionSecret | None, knowledge: Knowledge, *,
                    device="cpu") -> Reconstruction:
        secret = secret if secret is not None else InversionSecret(self.seed or 0)
        counts = set(observed.num_examples)
        if len(counts) != 1:
            raise ValueError(f"{self.name} inverts updates of one batch size; observed {sorted(counts)} samples")
        update, steps = None, 1
        if observed.kind == "gradient":
            gradients = observed.updates
        elif observed.kind == "delta":
            gradients, update, steps = delta_as_gradient(observed, knowledge)
        else:
            raise ValueError(f"{self.name} inverts gradients or FedAvg deltas; it observed {observed.kind}s")
        if bool(zero_rows(observed.updates).all()):  # no gradient to match: any image would be invented
            return nothing_to_reconstruct(tuple(knowledge.input_shape), device)
        return invert(self.config, observed, knowledge, gradients=gradients, device=device, seed=secret.seed,
                      update=update, steps=steps, proxy=secret.proxy)


def delta_as_gradient(observed: Observed, knowledge: Knowledge) -> tuple[dict, dict, int]:
    """A FedAvg update read as one FedSGD gradient of all its samples (the baseline of Dimitrov et al. 2022 §5:
    a FedSGD attack on a FedAvg update): ``-delta / (lr * steps)`` of every parameter, when the server knows the
    local training, else ``-delta`` (the scale matters only to the l2 distance). Returns that gradient, the whole
    update (for the batch-norm buffers) and the local steps (1 when unknown)."""
    parameters = dict(observed.sent[0].named_parameters())
    local, steps = knowledge.local_training, 1
    if local is not None:
        samples = observed.num_examples[0] // local.epochs
        steps = local.steps or local.epochs * -(-samples // local.batch_size)
    scale = -1.0 / (local.lr * steps) if local is not None else -1.0
    gradients = {n: t * scale for n, t in observed.updates.items() if n in parameters}
    return gradients, dict(observed.updates), steps


def proxy_secret(config: InversionConfig, model: nn.Module, context) -> BatchNormTargets | None:
    """What an inversion keeps at ``prepare``: the batch-norm statistics of the server's public data
    (``context.public``) where the batch-norm prior may use them (``bn_prior`` "proxy" or "auto"), else ``None``."""
    public = getattr(context, "public", None)
    if config.bn_prior not in ("proxy", "auto") or public is None or not batch_norm_layers(model):
        return None
    device = getattr(context, "device", "cpu")
    return proxy_targets(attack_copy(model, device), public.to(device).float())


def inversion_factory(config: InversionConfig) -> Callable[..., InversionAttack]:
    """A registry entry for preset ``config``: options are ``iterations`` (a short budget, see
    :func:`fedleak.attacks.inversion.presets.short_run`), the ``seed`` of the dummy data (default: the round's)
    and any
    :class:`InversionConfig` field to change."""

    def build(*, iterations: int | None = None, seed: int | None = None, **changes) -> InversionAttack:
        changed = config.with_(**changes) if changes else config
        return InversionAttack(changed if iterations is None else short_run(changed, iterations), seed)

    fields = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(config, f.name))
              for f in dataclasses.fields(InversionConfig) if f.name != "name"]
    build.__signature__ = inspect.Signature(
        [inspect.Parameter("iterations", inspect.Parameter.KEYWORD_ONLY, default=None),
         inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=None), *fields])
    build.__doc__ = DESCRIPTIONS.get(config.name, InversionAttack.__doc__)
    return build


def resolve(attack: str | InversionConfig) -> InversionConfig:
    """An attack name (a registered preset) or a config -> the config."""
    if isinstance(attack, InversionConfig):
        return attack
    if attack not in PRESETS:
        ATTACKS.get(attack)  # an unknown name: the error lists every attack
        raise ValueError(f"attack {attack!r} is not a gradient-inversion attack; those are: {', '.join(PRESETS)}")
    return PRESETS[attack]


def _gradients(gradients: Mapping[str, torch.Tensor], victims: int, device) -> dict[str, torch.Tensor]:
    """The observed gradients, ``name -> (V, *shape)``, as float32 on ``device``, checked finite."""
    if not gradients:
        raise ValueError("observed gradients are empty")
    if not isinstance(gradients, Mapping) or not all(isinstance(g, torch.Tensor) for g in gradients.values()):
        raise TypeError("observed gradients must map parameter names to tensors stacked over the observed updates")
    rows = {n: g.shape[0] if g.dim() else 0 for n, g in gradients.items()}
    if set(rows.values()) != {victims}:
        raise ValueError(f"observed gradients must be stacked over the same number of victims ({victims}); got {rows}")
    grads = {n: g.detach().to(device=device, dtype=torch.float32) for n, g in gradients.items()}
    check_finite(grads, "observed gradients")
    return grads


def _check_names(model: nn.Module, grads: Mapping[str, torch.Tensor]) -> list[str]:
    params = dict(model.named_parameters())
    unknown = [n for n in grads if n not in params]
    if unknown:
        raise ValueError(f"observed gradients for {unknown[:4]} which the model does not have; "
                         f"model parameters: {list(params)[:6]} ...")
    wrong = [(n, tuple(g.shape[1:]), tuple(params[n].shape)) for n, g in grads.items()
             if tuple(g.shape[1:]) != tuple(params[n].shape)]
    if wrong:
        name, got, want = wrong[0]
        raise ValueError(f"observed gradient {name!r} has per-victim shape {got}, the parameter has {want} "
                         f"(gradients must be stacked as (victims, *parameter shape))")
    return [n for n in params if n in grads]


def _output_layer(model: nn.Module, gradients: Mapping[str, torch.Tensor], input_shape: tuple[int, ...]):
    layer = trace(model, input_shape=input_shape).output_layer().name
    weight = gradients.get(f"{layer}.weight")
    if weight is None:
        raise ValueError(f"labels are unknown and the gradient of the output layer {layer!r} was not observed")
    return weight, gradients.get(f"{layer}.bias")


def recover_labels(model: nn.Module, gradients: Mapping[str, torch.Tensor], input_shape: tuple[int, ...]
                   ) -> torch.Tensor:
    """iDLG labels ``(V,)`` of B = 1 victims from the observed gradients (``name -> (V, *shape)``) of the model's
    output layer."""
    return idlg_labels(*_output_layer(model, gradients, input_shape))


def _labels(model: nn.Module, gradients: Mapping[str, torch.Tensor], batch: int, input_shape: tuple[int, ...]
            ) -> torch.Tensor:
    """iDLG labels ``(V,)`` (B = 1) or each batch's labels ``(V, B)`` (Wainakh et al.)."""
    if batch_norm_layers(model):  # traced on one input: batch norm must use its running statistics
        model = copy.deepcopy(model).eval()
    weight, bias = _output_layer(model, gradients, input_shape)
    if batch == 1:
        return idlg_labels(weight, bias)
    return torch.stack([batch_labels(weight[v], None if bias is None else bias[v], batch) for v in range(len(weight))])


def bn_targets(config: InversionConfig, model: nn.Module, attacked: nn.Module, *, update=None, steps: int = 1,
               proxy: BatchNormTargets | None = None) -> BatchNormTargets | None:
    """The batch-norm targets ``config.bn_prior`` asks for (:mod:`fedleak.attacks.inversion.bn_prior`); ``None``
    for no prior. ``model``: as sent; ``update``: the observed FedAvg updates (BN buffers included) after
    ``steps`` local steps; ``proxy``: the statistics of the server's public data."""
    mode = config.bn_prior
    if mode == "none" or not batch_norm_layers(attacked):
        return None
    found = {"inferred": lambda: inferred_targets(model, update or {}, steps),
             "running": lambda: running_targets(model), "proxy": lambda: proxy}
    if mode != "auto":
        targets = found[mode]()
        if targets is None:
            raise ValueError(f"bn_prior={mode!r}: " + {
                "inferred": "the observed update carries no batch-norm buffers (FedSGD gradients never do)",
                "running": "the model's batch-norm layers have no trained running statistics",
                "proxy": "the server has no public data (AttackContext.public)"}[mode])
        return targets
    for candidate in ("inferred", "running", "proxy"):
        targets = found[candidate]()
        if targets is not None:
            return targets
    return None


def invert(attack: str | InversionConfig, observed: Observed, knowledge: Knowledge, *,
           gradients: Mapping[str, torch.Tensor] | None = None, device="cpu", seed: int = 0, update=None,
           steps: int = 1, proxy: BatchNormTargets | None = None) -> Reconstruction:
    """Invert the ``V`` observed updates, each one independent victim's mean gradient of its ``num_examples``
    samples on the model it was sent, with one attack (Algorithm 1 of paper 001 with the attack's gradient model;
    Algorithm 2 for ``cdia``). ``gradients``: the updates read as gradients (default ``observed.updates``; a FedAvg
    delta as :func:`delta_as_gradient`). The victims' data is never an input. ``update``/``steps``/``proxy``:
    sources of the batch-norm targets (:func:`bn_targets`). Returns ``V * B`` images, ``meta["source"]`` the
    victim of each."""
    config = resolve(attack)
    if not isinstance(observed, Observed):
        raise TypeError(f"observed must be an Observed, got {type(observed).__name__}")
    if not isinstance(knowledge, Knowledge):
        raise TypeError(f"knowledge must be a Knowledge, got {type(knowledge).__name__}")
    batches = set(observed.num_examples)
    if len(batches) != 1:
        raise ValueError(f"{config.name} inverts updates of one batch size; observed {sorted(batches)} samples")
    device = torch.device(device)
    model = observed.sent[0]
    victims, restarts, batch = len(observed.sources), config.restarts, batches.pop()
    received = _gradients(observed.updates if gradients is None else gradients, victims, device)
    attacked = attack_copy(model, device)
    names = _check_names(attacked, received)
    grads = {n: received[n] for n in names}
    lanes = victims * restarts
    lane_victim = torch.arange(victims, device=device).repeat(restarts)
    targets = bn_targets(config, model, attacked, update=update, steps=steps, proxy=proxy)
    prior = None if targets is None else BatchNormPrior(attacked, targets, lane_victim)
    generator = torch.Generator().manual_seed(seed)

    labels = _labels(model, received, batch, knowledge.input_shape).to(device)
    gm = build_gradient_model(config, attacked, grads, knowledge, lane_victim, generator)
    if batch > 1 and (gm.fixed_draws or gm.free_draws or gm.dp_clip is not None):
        raise ValueError(f"attack {config.name!r} models the client's random modules or DP-SGD, which fedleak "
                         f"supports for B = 1 victims only; got batches of {batch}")
    target = {n: g[lane_victim] for n, g in grads.items()}
    dummy_gradients = LaneGradients(attacked, names) if batch == 1 else LaneBatchGradients(attacked, names)
    distance = DISTANCES.get(config.distance)(target, gm.names)
    shape = (lanes, *knowledge.input_shape) if batch == 1 else (lanes, batch, *knowledge.input_shape)
    state = {"x": torch.randn(shape, generator=generator).to(device)}
    if config.optimise_labels:
        num_classes = attacked(torch.zeros((1, *knowledge.input_shape), device=device)).shape[-1]
        state["y"] = torch.randn((*shape[:-len(knowledge.input_shape)], num_classes), generator=generator).to(device)
    state.update(gm.initial_state())
    lane_labels = labels[lane_victim]
    low, high = knowledge.input_range

    def objective(current: dict[str, torch.Tensor]) -> torch.Tensor:
        y = current["y"].softmax(-1) if config.optimise_labels else lane_labels
        x = current["x"]
        raw = dummy_gradients(x, y, gm.draws(current)) if batch == 1 else dummy_gradients(x, y)
        loss = distance(gm.shared(raw, current)) + gm.penalty(current, lanes)
        if config.tv_weight:
            images = x.flatten(0, 1) if batch > 1 else x
            loss = loss + config.tv_weight * total_variation(images).view(lanes, -1).mean(1)
        if prior is not None:
            loss = loss + config.bn_weight * prior(x if batch > 1 else x.unsqueeze(1))
        return loss

    def project(current: dict[str, torch.Tensor]) -> None:
        if config.boxed:
            current["x"].clamp_(low, high)
        gm.project(current)

    outcome = optimise(objective, state, project, config, signed=("x",) if config.signed else ())
    best_restart = outcome.loss.view(restarts, victims).nan_to_num(float("inf")).argmin(0)
    chosen = best_restart * victims + torch.arange(victims, device=device)
    images = outcome.best["x"][chosen].clamp(low, high).reshape(victims * batch, *knowledge.input_shape)
    if config.optimise_labels:
        labels = outcome.best["y"][chosen].argmax(-1)
    meta = {"loss": outcome.loss[chosen], "iterations": outcome.iterations[chosen],
            "source": torch.arange(victims, device=device)}
    return Reconstruction(images, labels.reshape(-1), meta={k: v.repeat_interleave(batch) for k, v in meta.items()},
                          info={"seconds": outcome.seconds, "bn_prior": "none" if targets is None else targets.mode},
                          paired=True)
