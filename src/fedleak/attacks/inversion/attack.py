"""The uniform call of every gradient-inversion attack:
``reconstruct(attack, model, received, knowledge, *, device) -> Reconstruction``.

All victims (and restarts) are lanes of one batched optimisation (:mod:`fedleak.attacks.inversion.loop`): one
batched dummy-gradient computation (:class:`fedleak.fl.per_sample.SampleGradients`), one distance and one
backward pass per iteration for all of them.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Observed, Reconstruction, nothing_to_reconstruct, zero_rows
from fedleak.attacks.inversion.config import InversionConfig
from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.attacks.inversion.dummy_gradients import attack_copy
from fedleak.attacks.inversion.gradient_models import build_gradient_model
from fedleak.attacks.inversion.knowledge import ReceivedGradients, ServerKnowledge
from fedleak.attacks.inversion.labels import idlg_labels
from fedleak.attacks.inversion.loop import optimise
from fedleak.attacks.inversion.presets import DESCRIPTIONS, PRESETS, short_run
from fedleak.attacks.inversion.regularizers import total_variation
from fedleak.checks import check_finite
from fedleak.models.anatomy import trace
from fedleak.fl.per_sample import SampleGradients


@dataclass(frozen=True)
class InversionAttack:
    """A gradient-inversion attack of an honest-but-curious server (paper 001 Algorithm 1; Algorithm 2 for
    ``cdia``): it sends the model unchanged and inverts every observed update, all of them lanes of one batched
    optimisation, each observed update taken as one victim's B = 1 gradient; ``seed`` seeds the dummy data."""

    config: InversionConfig
    seed: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    def prepare(self, model: nn.Module, context=None) -> tuple[nn.Module, None]:
        return model, None

    def reconstruct(self, observed: Observed, secret: None, knowledge: ServerKnowledge, *,
                    device="cpu") -> Reconstruction:
        if observed.kind != "gradient":
            raise ValueError(f"{self.name} inverts gradients (FedSGD); it observed {observed.kind}s")
        if bool(zero_rows(observed.updates).all()):  # no gradient to match: any image would be invented
            return nothing_to_reconstruct(tuple(knowledge.input_shape), device)
        result = reconstruct(self.config, observed.sent[0], ReceivedGradients(observed.updates), knowledge,
                             device=device, seed=self.seed)
        result.meta["source"] = torch.arange(len(observed.sources), device=result.inputs.device)
        return result


def inversion_factory(config: InversionConfig) -> Callable[..., InversionAttack]:
    """A registry entry for preset ``config``: options are ``iterations`` (a short budget, see
    :func:`fedleak.attacks.inversion.presets.short_run`), the ``seed`` of the dummy data and any
    :class:`InversionConfig` field to change."""

    def build(*, iterations: int | None = None, seed: int = 0, **changes) -> InversionAttack:
        changed = config.with_(**changes) if changes else config
        return InversionAttack(changed if iterations is None else short_run(changed, iterations), seed)

    fields = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(config, f.name))
              for f in dataclasses.fields(InversionConfig) if f.name != "name"]
    build.__signature__ = inspect.Signature(
        [inspect.Parameter("iterations", inspect.Parameter.KEYWORD_ONLY, default=None),
         inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=0), *fields])
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


def _received(received, device) -> ReceivedGradients:
    if isinstance(received, Mapping):
        received = ReceivedGradients(received)
    if not isinstance(received, ReceivedGradients):
        raise TypeError(f"received must be ReceivedGradients or a dict of stacked gradients, "
                        f"got {type(received).__name__}")
    grads = {n: g.detach().to(device=device, dtype=torch.float32) for n, g in received.gradients.items()}
    check_finite(grads, "received gradients")
    labels = None if received.labels is None else received.labels.to(device)
    return ReceivedGradients(grads, labels)


def _check_names(model: nn.Module, grads: Mapping[str, torch.Tensor]) -> list[str]:
    params = dict(model.named_parameters())
    unknown = [n for n in grads if n not in params]
    if unknown:
        raise ValueError(f"received gradients for {unknown[:4]} which the model does not have; "
                         f"model parameters: {list(params)[:6]} ...")
    wrong = [(n, tuple(g.shape[1:]), tuple(params[n].shape)) for n, g in grads.items()
             if tuple(g.shape[1:]) != tuple(params[n].shape)]
    if wrong:
        name, got, want = wrong[0]
        raise ValueError(f"received gradient {name!r} has per-victim shape {got}, the parameter has {want} "
                         f"(gradients must be stacked as (victims, *parameter shape))")
    return [n for n in params if n in grads]


def recover_labels(model: nn.Module, received: ReceivedGradients, input_shape: tuple[int, ...]) -> torch.Tensor:
    """iDLG labels ``(V,)`` of B = 1 victims from the received gradient of the model's output layer."""
    layer = trace(model, input_shape=input_shape).output_layer().name
    weight = received.gradients.get(f"{layer}.weight")
    if weight is None:
        raise ValueError(f"labels are unknown and the gradient of the output layer {layer!r} was not received")
    return idlg_labels(weight, received.gradients.get(f"{layer}.bias"))


def reconstruct(attack: str | InversionConfig, model: nn.Module, received: ReceivedGradients | Mapping,
                knowledge: ServerKnowledge, *, device="cpu", seed: int = 0) -> Reconstruction:
    """Invert the B = 1 gradients of ``V`` independent victims with one attack (Algorithm 1 of paper 001 with
    the attack's gradient model; Algorithm 2 for ``cdia``). The victims' data is never an input."""
    config = resolve(attack)
    if not isinstance(knowledge, ServerKnowledge):
        raise TypeError(f"knowledge must be a ServerKnowledge, got {type(knowledge).__name__}")
    device = torch.device(device)
    received = _received(received, device)
    attacked = attack_copy(model, device)
    names = _check_names(attacked, received.gradients)
    grads = {n: received.gradients[n] for n in names}
    victims, restarts = received.victims, config.restarts
    lanes = victims * restarts
    lane_victim = torch.arange(victims, device=device).repeat(restarts)
    generator = torch.Generator().manual_seed(seed)

    labels = received.labels
    if labels is None:
        labels = recover_labels(attacked, received, knowledge.input_shape)
    gm = build_gradient_model(config, attacked, grads, knowledge, lane_victim, generator)
    target = {n: g[lane_victim] for n, g in grads.items()}
    dummy_gradients = SampleGradients(attacked, names)
    distance = DISTANCES.get(config.distance)(target, gm.names)
    state = {"x": torch.randn((lanes, *knowledge.input_shape), generator=generator).to(device)}
    if config.optimise_labels:
        num_classes = attacked(torch.zeros((1, *knowledge.input_shape), device=device)).shape[-1]
        state["y"] = torch.randn((lanes, num_classes), generator=generator).to(device)
    state.update(gm.initial_state())
    lane_labels = labels[lane_victim]
    low, high = knowledge.input_range

    def objective(current: dict[str, torch.Tensor]) -> torch.Tensor:
        y = current["y"].softmax(-1) if config.optimise_labels else lane_labels
        shared = gm.shared(dummy_gradients(current["x"], y, gm.draws(current)), current)
        loss = distance(shared) + gm.penalty(current, lanes)
        if config.tv_weight:
            loss = loss + config.tv_weight * total_variation(current["x"])
        return loss

    def project(current: dict[str, torch.Tensor]) -> None:
        if config.boxed:
            current["x"].clamp_(low, high)
        gm.project(current)

    outcome = optimise(objective, state, project, config, signed=("x",) if config.signed else ())
    best_restart = outcome.loss.view(restarts, victims).nan_to_num(float("inf")).argmin(0)
    chosen = best_restart * victims + torch.arange(victims, device=device)
    images = outcome.best["x"][chosen].clamp(low, high)
    if config.optimise_labels:
        labels = outcome.best["y"][chosen].argmax(-1)
    return Reconstruction(images, labels, meta={"loss": outcome.loss[chosen], "iterations": outcome.iterations[chosen]},
                          info={"seconds": outcome.seconds})
