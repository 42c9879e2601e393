"""Build a federation (data split, model, clients, server) from names, in one seeded call."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch

from fedleak.data import TensorDataset, load_dataset, split_clients
from fedleak.fl.client import Client, ClientMod
from fedleak.fl.config import FLConfig
from fedleak.fl.reply_check import ReplyLimits
from fedleak.fl.robust import RobustAggregation
from fedleak.fl.server import Server
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
    audit=None,
    model=None,
    datasets: tuple[TensorDataset, TensorDataset] | None = None,
    progress: bool = True,
    limits: ReplyLimits = ReplyLimits(),
    robust: RobustAggregation | None = None,
) -> Server:
    """Seed everything, load (unless ``datasets`` gives the train and test splits) and split the data, build the
    model (unless given) and the clients; ``audit`` (a :class:`fedleak.cases.Audit`) is the server's attack,
    ``mods`` the clients' mods; ``limits`` what the server accepts of a reply and ``robust`` its opt-in robust
    aggregation (:class:`Server`)."""
    torch.manual_seed(config.seed)
    if datasets is None:
        options = {"size": tuple(spec.size)} if spec.size else {}
        datasets = tuple(load_dataset(spec.dataset, root=spec.root, split=s, **options) for s in ("train", "test"))
    train, test = datasets
    parts = split_clients(train, config.num_clients, scheme=spec.partition, alpha=spec.alpha,
                          val_fraction=spec.val_fraction, seed=config.seed)
    if model is None:
        model = build_model(spec.model, train.info.input_shape, train.info.num_classes, **spec.model_options)
    clients = [Client(i, part, config, gradient_fn=gradient_fn, mods=mods) for i, part in enumerate(parts)]
    return Server(model, clients, config, test, audit=audit, progress=progress, limits=limits, robust=robust)
