"""The privacy protocol's case (paper 001 §5.2): V victim images of one client, each the whole batch (B = 1) of
one local training step of a defended client; the server receives the V gradients.

This is the client side of breaching's wall: it returns what the server receives (:class:`ReceivedGradients`,
without labels), what it knows (:class:`Knowledge`, including the client's true randomness for the WIIG
baseline only), and, separately, the victims' true images and labels for scoring.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from fedleak.attacks.base import Knowledge
from fedleak.attacks.inversion.knowledge import ReceivedGradients
from fedleak.defenses import apply_defenses, last_draws, parse_defenses
from fedleak.defenses.dp import DPSGD
from fedleak.fl.client import ClientMod, ClientUpdate
from fedleak.fl.training import GradientFn, batch_gradients


@dataclass
class VictimCase:
    """The defended model the server sent, what it received and knows, and the truth (for scoring only)."""

    model: nn.Module
    received: ReceivedGradients
    knowledge: Knowledge
    images: torch.Tensor
    labels: torch.Tensor


def _stack(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([row[name] for row in rows]) for name in rows[0]}


def client_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                     gradient_fn: GradientFn = batch_gradients, mods: Sequence[ClientMod] = ()
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each image's B = 1 training step on ``model`` (training mode) through ``gradient_fn`` and the update
    ``mods`` (e.g. pruning), as a client computes it. Returns the sent gradients, the random modules' draws and
    the DP noise, each stacked over the victims (draws ``(V, 1, ...)``; noise empty without DP)."""
    model.train()
    sent, draws, noise = [], [], []
    for i in range(len(images)):
        grads = gradient_fn(model, images[i : i + 1], labels[i : i + 1])
        draws.append({k: v.detach() for k, v in last_draws(model).items()})
        if isinstance(gradient_fn, DPSGD):
            noise.append(dict(gradient_fn.last_noise))

        def call_next(_model, grads=grads):
            return ClientUpdate(0, 0, "gradient", grads, 1)

        for mod in reversed(tuple(mods)):
            call_next = (lambda m, nxt=call_next, md=mod: md(m, None, nxt))
        sent.append(call_next(model).tensors)
    return _stack(sent), (_stack(draws) if draws[0] else {}), (_stack(noise) if noise else {})


def victim_case(model: nn.Module, model_name: str, defenses, images: torch.Tensor, labels: torch.Tensor, *,
                input_range: tuple[float, float] = (0.0, 1.0), state: dict | None = None, device="cpu") -> VictimCase:
    """Apply ``defenses`` (e.g. ``"dropout,dp,prune,cvb"``, see :func:`fedleak.defenses.parse_defenses`) to a
    copy of ``model`` and let each of the V victim images take one B = 1 step on it. ``state``: a state dict of
    the defended model (e.g. after training, modules included) loaded before the step."""
    if images.dim() < 2 or len(images) != len(labels):
        raise ValueError(f"need V images (V, *input_shape) and V labels; got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    specs = parse_defenses(defenses)
    input_shape = tuple(images.shape[1:])
    on_device = copy.deepcopy(model).to(device)  # defenses that draw noise create it on the model's device
    defended, gradient_fn, mods = apply_defenses(on_device, specs, model_name=model_name, input_shape=input_shape)
    if state is not None:
        defended.load_state_dict(state)
    images, labels = images.to(device), labels.to(device)
    sent, draws, noise = client_gradients(defended, images, labels, gradient_fn=gradient_fn, mods=mods)
    dp = gradient_fn if isinstance(gradient_fn, DPSGD) else None
    knowledge = Knowledge(
        input_shape=input_shape, input_range=input_range, defenses=tuple(s.name for s in specs),
        dp_clip=dp.clip if dp else None, dp_sigma=dp.sigma if dp else None, true_draws=draws, true_dp_noise=noise,
    )
    return VictimCase(defended, ReceivedGradients(sent), knowledge, images, labels)
