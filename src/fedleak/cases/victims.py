"""The privacy protocol's case (paper 001 §5.2): V victim images, each the whole batch (B = 1) of one FedSGD step
of a defended :class:`fedleak.fl.Client` (its gradient function and update mods are the defenses'), all on the
one model the server sent; the server observes the V gradients. A victim may hold a batch of B inputs instead (a
text model's B sequences, DAGER).

This is the client side of breaching's wall: :func:`victim_case` returns what the server observes
(:class:`fedleak.attacks.base.Observed`, without labels), what it knows (:class:`fedleak.attacks.base.Knowledge`:
what the defended client discloses, plus the client's true randomness for the WIIG baseline only), and,
separately, the victims' true images and labels for scoring. :func:`attack_victims` runs one registered attack of
an honest server on the case (``ATTACKS.build(name).prepare`` / ``reconstruct``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext, Knowledge, Observed, Reconstruction, stack_updates
from fedleak.data import load_dataset, split_clients
from fedleak.data.base import DatasetInfo, TensorDataset
from fedleak.data.partition import ClientData
from fedleak.defenses import defend
from fedleak.fl.client import Client
from fedleak.fl.config import FLConfig

ROUND = 1  # the victims' one round


@dataclass
class VictimCase:
    """The defended model the server sent, what it observed and knows, and the truth (for scoring only)."""

    model: nn.Module
    observed: Observed
    knowledge: Knowledge
    images: torch.Tensor
    labels: torch.Tensor


def client_images(dataset: str, *, root: str | None, size: tuple[int, int] | None, clients: int, count: int,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor, DatasetInfo]:
    """``count`` images of one client's training data (client 0 of an IID split into ``clients``), drawn with
    ``seed`` (paper 001 §5.2), their labels and the dataset's info."""
    train = load_dataset(dataset, root=root, split="train", size=size)
    client = split_clients(train, clients, scheme="iid", seed=seed)[0].train
    if count > len(client):
        raise ValueError(f"{count} victims requested but client 0 holds {len(client)} training images")
    order = torch.randperm(len(client), generator=torch.Generator().manual_seed(seed))[:count]
    return client.inputs(order), client.y[order], train.info


def _victim(index: int, x: torch.Tensor, y: torch.Tensor, defended, device) -> Client:
    """Client ``index`` holding only ``x`` and ``y``: its one FedSGD batch is all of them."""
    info = DatasetInfo("victim", tuple(x.shape[1:]), 0)
    data = ClientData(TensorDataset(x, y, info), TensorDataset(x[:0], y[:0], info))
    config = FLConfig(algorithm="fedsgd", num_clients=1, batch_size=len(x), device=str(device))
    return Client(index, data, config, gradient_fn=defended.gradient_fn, mods=defended.mods)


def victim_case(model: nn.Module, model_name: str, defenses, images: torch.Tensor, labels: torch.Tensor, *,
                batch: int = 1, input_range: tuple[float, float] = (0.0, 1.0), state: dict | None = None,
                device="cpu") -> VictimCase:
    """Apply ``defenses`` (e.g. ``"dropout,dp,prune,cvb"``, see :func:`fedleak.defenses.parse_defenses`) to a
    copy of ``model`` and let every ``batch`` consecutive inputs (images or token sequences) be one client's FedSGD
    batch on it (B = 1 by default: one victim per image), one client after the other. ``state``: a state dict of
    the defended model (e.g. after training, modules included) loaded before the step."""
    if images.dim() < 2 or len(images) != len(labels):
        raise ValueError(f"need V inputs (V, *input_shape) and V labels; got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1 or len(images) % batch:
        raise ValueError(f"batch must be an int >= 1 that divides the {len(images)} inputs, got {batch!r}")
    input_shape = tuple(images.shape[1:])
    on_device = copy.deepcopy(model).to(device)  # defenses that draw noise create it on the model's device
    defended = defend(on_device, defenses, model_name=model_name, input_shape=input_shape)
    if state is not None:
        defended.model.load_state_dict(state)
    images, labels = images.to(device), labels.to(device)
    sent, draws, noise = [], [], []
    for index, start in enumerate(range(0, len(images), batch)):
        client = _victim(index, images[start:start + batch], labels[start:start + batch], defended, device)
        sent.append(client.handle(defended.model, ROUND).tensors)
        drawn, dp_noise = defended.last_randomness()
        draws.append(drawn)
        noise.append(dp_noise)
    victims = len(sent)
    observed = Observed(stack_updates(sent), "gradient", tuple(range(victims)), (batch,) * victims,
                        (defended.model,) * victims)
    knowledge = Knowledge(input_shape=input_shape, input_range=input_range, **defended.disclosed(),
                          true_draws=stack_updates(draws) if draws[0] else {},
                          true_dp_noise=stack_updates(noise) if noise[0] else {})
    return VictimCase(defended.model, observed, knowledge, images, labels)


def attack_victims(case: VictimCase, attack: str, *, seed: int = 0, device="cpu", **options) -> Reconstruction:
    """Attack ``attack`` of :data:`fedleak.attacks.ATTACKS` (with ``options``, e.g. ``iterations``) run by an
    honest server on ``case``: ``prepare`` in a context seeded ``seed`` (it must send the model unchanged: the
    victims computed their gradients on it), then ``reconstruct`` from what the server observed and knows."""
    built = ATTACKS.build(attack, **options)
    context = AttackContext(case.knowledge.input_shape, seed=seed, device=device)
    sent, secret = built.prepare(case.model, context)
    if sent is not case.model:
        raise ValueError(f"attack {attack!r} changes the model it sends; the victims' gradients are of the model as "
                         "the honest server sent it")
    return built.reconstruct(case.observed, secret, case.knowledge, device=device)
