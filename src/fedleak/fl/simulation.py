"""Build a federation (data split, model, clients, server) from names, in one seeded call."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from fedleak.data import load_dataset, split_clients
from fedleak.fl.client import Client, ClientMod
from fedleak.fl.config import FLConfig
from fedleak.fl.server import Dispatch, Observer, Server
from fedleak.fl.training import GradientFn, batch_gradients
from fedleak.models import build_model


@dataclass
class FederationSpec:
    """Which data, model and split a run uses; together with :class:`FLConfig` it is the full config of a run."""

    dataset: str = "bundled"
    model: str = "cnn"
    root: str | None = None
    size: tuple[int, int] | None = None
    partition: str = "iid"
    alpha: float = 0.5
    val_fraction: float = 0.1
    model_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def build_federation(
    spec: FederationSpec,
    config: FLConfig,
    *,
    gradient_fn: GradientFn = batch_gradients,
    mods: Sequence[ClientMod] = (),
    dispatch: Dispatch | None = None,
    observers: Sequence[Observer] = (),
    model=None,
    progress: bool = True,
) -> Server:
    """Seed everything, load and split the data, build the model (unless given) and the clients."""
    torch.manual_seed(config.seed)
    options = {"size": tuple(spec.size)} if spec.size else {}
    train = load_dataset(spec.dataset, root=spec.root, split="train", **options)
    test = load_dataset(spec.dataset, root=spec.root, split="test", **options)
    parts = split_clients(train, config.num_clients, scheme=spec.partition, alpha=spec.alpha,
                          val_fraction=spec.val_fraction, seed=config.seed)
    if model is None:
        model = build_model(spec.model, train.info.input_shape, train.info.num_classes, **spec.model_options)
    clients = [Client(i, part, config, gradient_fn=gradient_fn, mods=mods) for i, part in enumerate(parts)]
    return Server(model, clients, config, test, dispatch=dispatch, observers=observers, progress=progress)
