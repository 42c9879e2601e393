"""The federation a malicious server manipulates (``fedleak detect-eval`` and its first-contact mode): its
configuration, each model's client data, and a mod timing local training (the detectors' overhead)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch.nn as nn

from fedleak.data import load_dataset
from fedleak.data.base import TensorDataset
from fedleak.data.tokens import image_tokens, next_tokens
from fedleak.fl import Client, FLConfig
from fedleak.study.config import RunConfig

TEXT_MODELS = ("text_transformer", "imdb_fc", "embedding_lm")
LANGUAGE_MODELS = ("embedding_lm",)  # trained on next tokens (:func:`fedleak.data.tokens.next_tokens`)


@dataclass
class ManipulatedRounds(RunConfig):
    """What detect-eval and the first-contact evaluation share: ``num_clients`` clients train ``rounds`` FedAvg
    rounds (Adam at ``lr``, batches of ``batch_size``; Dirichlet splits of concentration ``alpha``); the server
    manipulates the model of ``attack_rounds`` (early, late) and ``attack_clients`` clients check each manipulated
    model on ``samples`` local samples."""

    num_clients: int = 10
    rounds: int = 20
    attack_rounds: tuple[int, ...] = (2, 15)
    attack_clients: int = 10
    samples: int = 128
    batch_size: int = 32
    lr: float = 2e-3
    alpha: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        self.attack_rounds = tuple(self.attack_rounds)
        if any(not 1 <= r <= self.rounds for r in self.attack_rounds):
            raise ValueError(f"attack rounds {self.attack_rounds} must lie in 1..{self.rounds}")
        if not 1 <= self.attack_clients <= self.num_clients:
            raise ValueError(f"attack_clients must be in 1..{self.num_clients}, got {self.attack_clients}")

    def training(self) -> FLConfig:
        """The clients' FedAvg recipe."""
        return FLConfig(num_clients=self.num_clients, rounds=self.rounds, batch_size=self.batch_size, lr=self.lr,
                        seed=self.seed, device=self.device)


def registry_name(model: str) -> str:
    """The registry name of a model entry: ``resnet18-group`` -> ``resnet18``."""
    return model.split("-")[0]


def load_data(dataset: str, size: tuple | None, model: str) -> tuple[TensorDataset, TensorDataset]:
    """Train and test split of ``dataset`` (at ``size``); image data become tokens for a text model
    (:func:`fedleak.data.tokens.image_tokens`), token sequences next tokens for a language model."""
    splits = [load_dataset(dataset, split=s, **({"size": tuple(size)} if size else {})) for s in ("train", "test")]
    name = registry_name(model)
    if name in TEXT_MODELS and splits[0].info.kind == "image":
        splits = [image_tokens(s) for s in splits]
    if name in LANGUAGE_MODELS:
        splits = [next_tokens(s) for s in splits]
    return splits[0], splits[1]


def timed(model: nn.Module, client: Client, call_next) -> object:
    """A client mod timing local training (one epoch), for the detectors' overhead."""
    start = time.perf_counter()
    update = call_next(model)
    update.metrics["train_seconds"] = time.perf_counter() - start
    return update
