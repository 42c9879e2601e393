"""The malicious settings a detector evaluation tries on a model (Wang & Li §5's attacks, each at several
hyper-parameters): one :class:`AttackSetting` per (attack, hyper-parameters), chosen from the data's kind and what
the server holds (``public``: its own data, for the imprint bins and the fishing threshold)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from fedleak.attacks.base import AttackContext
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.data.base import DatasetInfo
from fedleak.models.features import classifier_features


@dataclass(frozen=True)
class AttackSetting:
    """The registered ``attack`` with ``options``, labelled ``setting``; ``clients``: the clients it prepares one
    model each for (LOKI, model inconsistency), empty when every client gets the same model."""

    attack: str
    setting: str
    options: dict = field(default_factory=dict)
    clients: tuple[int, ...] = ()

    def context(self, info: DatasetInfo, public: torch.Tensor) -> AttackContext:
        """The server's context: per-client attacks get the clients and the public data, the others neither."""
        if not self.clients:
            return AttackContext(info.input_shape, info.num_classes)
        return AttackContext(info.input_shape, info.num_classes, clients=self.clients, public=public)


def attack_settings(model: nn.Module, info: DatasetInfo, public: torch.Tensor, batch_size: int) -> list[AttackSetting]:
    """Every attack of :data:`fedleak.attacks.MALICIOUS` that reads a model sent to all clients, at the
    hyper-parameters ``fedleak detect-eval`` tries on ``model``."""
    shape, settings = info.input_shape, []
    if info.kind == "image":
        settings += [AttackSetting("trap_weights", f"s={s}", {"scale_factor": s}) for s in (0.95, 0.8)]
        settings.append(AttackSetting("input_forwarding", "seed=0"))
        settings += [AttackSetting("curious_kernels", f"c={c}", {"scale": c}) for c in (0.5, 1.0)]
        mean, std = brightness_prior(public)
        settings += [AttackSetting("robbing_the_fed", f"insert K={k}",
                                   {"num_bins": k, "feature_mean": mean, "feature_std": std}) for k in (64, 128)]
        settings.append(AttackSetting("robbing_the_fed", "reuse",
                                      {"variant": "reuse", "feature_mean": mean, "feature_std": std}))
    settings += [AttackSetting("class_fishing", f"class={t}", {"target_class": t})
                 for t in sorted({0, info.num_classes // 2})]
    features = classifier_features(model, public)
    feature = int(features.var(dim=0).argmax())
    for q in (0.5, 0.9):
        threshold = float(features[:, feature].quantile(q))
        settings.append(AttackSetting("feature_fishing", f"quantile={q}", {"feature": feature, "threshold": threshold}))
    if info.kind == "text":
        tokens = batch_size * shape[0]
        settings += [AttackSetting("decepticons", f"T={t}", {"tokens_per_update": t}) for t in (tokens, 4 * tokens)]
    return settings


def extra_settings(info: DatasetInfo, num_clients: int) -> list[AttackSetting]:
    """The manipulations :func:`attack_settings` leaves out: LOKI (images) and model inconsistency (around class
    fishing, which applies to every model with several outputs), each a model per client; SEER's shipped BN
    checkpoint (the one model it was trained for; n/a elsewhere); text embedding for a text model."""
    settings = []
    clients = tuple(range(num_clients))
    if info.kind == "image":
        settings.append(AttackSetting("loki", "K=64", {"num_bins": 64}, clients))
        settings.append(AttackSetting("seer", "checkpoint=bn", {"checkpoint": "bn"}))
    else:
        settings.append(AttackSetting("text_embedding", "s=0.99", {"seq_len": info.input_shape[0]}))
    settings.append(AttackSetting("model_inconsistency", "inner=class_fishing",
                                  {"target": 0, "inner": "class_fishing", "inner_options": {"target_class": 0}},
                                  clients))
    return settings
