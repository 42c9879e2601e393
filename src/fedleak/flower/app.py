"""A complete Flower app on fedleak: the ``ClientApp`` and ``ServerApp`` of ``examples/flower_app`` and of
``fedleak flower-demo``, one code path for Flower's simulation and deployment engines.

Everything is set by an :class:`AppConfig`, read from the run config (``[tool.flwr.app.config]`` of the app's
``pyproject.toml``, overridden by ``flwr run --run-config``) unless one is passed in. A client finds its share of
the data from its node config (``partition-id`` and ``num-partitions``: set by the simulation engine, and by
``flower-supernode --node-config`` in a deployment).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.app.user_config import UserConfig
from flwr.client.mod import make_ffn
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg, Result, Strategy

from fedleak.data import ClientData, load_dataset, split_clients
from fedleak.defenses import apply_defenses
from fedleak.fl.client import Client
from fedleak.fl.config import FLConfig
from fedleak.fl.reply_check import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_UPDATE_NORM, ReplyLimits
from fedleak.fl.training import evaluate
from fedleak.flower.client import LocalClient, defended_client, evaluate_handler, train_handler
from fedleak.flower.defense_mods import noise_mod, pruning_mod
from fedleak.flower.detector_mod import detector_mod, named_detectors
from fedleak.flower.records import load_state, record_to_state
from fedleak.flower.reply_check import CheckedStrategy
from fedleak.models import build_model
from fedleak.report import ResultsDir


@dataclass
class AppConfig:
    """One Flower run. Client side: data split, model, local recipe (FedAvg with ``local_steps`` steps of
    ``optimizer``; the default, one SGD step on a batch of 64, is FedSGD), fedleak ``defenses`` (training),
    update mods ``prune`` / ``noise`` (0: off) and, with ``detect``, the detector mod with ``detectors``
    (``{name: options}``). Server side: FedAvg, and with ``attack`` (a manipulation name) the
    :class:`~fedleak.flower.AuditStrategy` attacking ``victims`` clients in ``attack_rounds``; ``score`` matches
    its reconstructions against the training data (ground truth, used only for the metrics). Every reply is
    checked before aggregation (:mod:`fedleak.flower.reply_check`): ``max_examples`` bounds its num-examples,
    ``max_update_norm`` its change of the global model (0: no bound). Robust aggregation, opt-in: ``trim_beta``
    > 0 aggregates with Flower's ``FedTrimmedAvg`` (that fraction cut at each end), ``clip_norm`` > 0 clips each
    reply's change to that L2 norm first. Results go to ``results`` on the machine running the ServerApp."""

    dataset: str = "bundled"
    model: str = "fcnn"
    model_options: dict = field(default_factory=lambda: {"widths": [1000, 64]})
    partition: str = "iid"
    alpha: float = 0.5
    num_rounds: int = 3
    fraction_train: float = 1.0
    fraction_evaluate: float = 0.0
    min_nodes: int = 2
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    local_steps: int = 1
    defenses: str = ""
    prune: float = 0.0
    noise: float = 0.0
    detect: bool = False
    detectors: dict = field(default_factory=lambda: {"warmup_zscore": {"remember_rounds": 3}})
    attack: str = ""
    attack_rounds: list = field(default_factory=lambda: [3])
    victims: int = 3
    attack_options: dict = field(default_factory=lambda: {"std": 1e-4})
    score: bool = True
    max_examples: int = DEFAULT_MAX_EXAMPLES
    max_update_norm: float = DEFAULT_MAX_UPDATE_NORM
    clip_norm: float = 0.0
    trim_beta: float = 0.0
    results: str = "results/flower-app"
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_run_config(cls, run_config: UserConfig) -> "AppConfig":
        """Read the Flower run config: keys are the field names in kebab-case (``num-rounds``); dict fields are
        JSON strings (``model-options = '{"widths": [1000, 64]}'``), ``attack-rounds`` is ``"2,3"``."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, value in run_config.items():
            name = key.replace("-", "_")
            if name not in fields:
                valid = ", ".join(sorted(n.replace("_", "-") for n in fields))
                raise ValueError(f"unknown run-config key {key!r}; fedleak's Flower app reads: {valid}")
            if name == "attack_rounds":
                value = [int(r) for r in str(value).replace(" ", "").split(",") if r]
            elif fields[name].type == "dict":
                try:
                    value = json.loads(value) if isinstance(value, str) else value
                except json.JSONDecodeError as error:
                    raise ValueError(f"run-config {key!r} must be a JSON object, got {value!r} ({error})") from None
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def limits(self) -> ReplyLimits:
        """What the server accepts of a reply (``max_update_norm`` 0: no norm bound)."""
        return ReplyLimits(self.max_examples, self.max_update_norm or None)

    def fl_config(self, num_clients: int) -> FLConfig:
        return FLConfig(algorithm="fedavg", num_clients=num_clients, local_steps=self.local_steps,
                        batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr, seed=self.seed,
                        device=self.device)


@functools.lru_cache(maxsize=8)
def _partition(dataset: str, num: int, partition: str, alpha: float, seed: int, index: int) -> ClientData:
    data = load_dataset(dataset)
    return split_clients(data, num, scheme=partition, alpha=alpha, seed=seed)[index]


def node_partition(context: Context) -> tuple[int, int]:
    """``(partition-id, num-partitions)`` from the node config, with a message saying how to set them."""
    config = context.node_config
    if "partition-id" not in config or "num-partitions" not in config:
        raise ValueError("this SuperNode has no partition-id / num-partitions in its node config; start it with "
                         "flower-supernode --node-config 'partition-id=0 num-partitions=2'")
    index, num = int(config["partition-id"]), int(config["num-partitions"])
    if not 0 <= index < num:
        raise ValueError(f"partition-id {index} is not in 0..{num - 1}")
    return index, num


def global_model(config: AppConfig, input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module:
    """The federation's architecture: the model with the modules of the configured defenses (PRECODE, CVB,
    dropout) inserted, as every client builds it."""
    model = build_model(config.model, input_shape, num_classes, **config.model_options)
    if config.defenses:
        model = apply_defenses(model, config.defenses, model_name=config.model, input_shape=input_shape)[0]
    return model


def local_loader(config: AppConfig):
    """``load_local(context)`` for this config: the node's partition, the architecture, the fedleak client."""

    def load_local(context: Context) -> LocalClient:
        index, num = node_partition(context)
        data = _partition(config.dataset, num, config.partition, config.alpha, config.seed, index)
        model = build_model(config.model, data.train.info.input_shape, data.train.info.num_classes,
                            **config.model_options)
        client = Client(index, data, config.fl_config(num))
        return defended_client(model, config.defenses, model_name=config.model, client=client)

    return load_local


def client_mods(config: AppConfig, load_local) -> list[Mod]:
    """The train mods a config asks for, outermost first: detector, then pruning, then noise."""
    mods: list[Mod] = []
    if config.detect:
        mods.append(detector_mod(load_local, named_detectors(config.detectors)))
    if config.prune > 0:
        mods.append(pruning_mod(config.prune))
    if config.noise > 0:
        mods.append(noise_mod(config.noise, seed=config.seed))
    return mods


def client_app(config: AppConfig | None = None) -> ClientApp:
    """The fedleak ``ClientApp``; without ``config`` each message reads it from the run config."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        cfg = config or AppConfig.from_run_config(context.run_config)
        load_local = local_loader(cfg)
        return make_ffn(train_handler(load_local), client_mods(cfg, load_local))(message, context)

    @app.evaluate()
    def evaluate_model(message: Message, context: Context) -> Message:
        cfg = config or AppConfig.from_run_config(context.run_config)
        return evaluate_handler(local_loader(cfg))(message, context)

    return app


def run_server(grid: Grid, config: AppConfig) -> Result:
    """FedAvg or FedTrimmedAvg behind the reply check (the audit's when ``config.attack`` is set) with the global model evaluated on the test
    split after every round; writes ``config.json`` and ``rounds.jsonl`` to ``config.results``."""
    out = Path(config.results)
    (out / "rounds.jsonl").unlink(missing_ok=True)
    results = ResultsDir(out, {"app": config.to_dict()}, cells="rounds.jsonl")
    test = load_dataset(config.dataset, split="test")
    torch.manual_seed(config.seed)
    model = global_model(config, test.info.input_shape, test.info.num_classes).to(config.device)
    sampling = dict(fraction_train=config.fraction_train, fraction_evaluate=config.fraction_evaluate,
                    min_train_nodes=config.min_nodes, min_evaluate_nodes=config.min_nodes,
                    min_available_nodes=config.min_nodes)
    strategy: Strategy = FedTrimmedAvg(beta=config.trim_beta, **sampling) if config.trim_beta > 0 else \
        FedAvg(**sampling)
    clip_norm = config.clip_norm or None
    if config.attack:
        from fedleak.flower.audit import AuditStrategy  # server side only (see fedleak.flower.__getattr__)

        reference = None
        if config.score:
            train = load_dataset(config.dataset)
            reference = train.inputs(slice(None)).to(config.device)
        strategy = AuditStrategy(strategy, model, out / "audit", manipulation=config.attack,
                                 rounds=config.attack_rounds, victims=config.victims, reference=reference,
                                 seed=config.seed, device=config.device, limits=config.limits(),
                                 clip_norm=clip_norm, **config.attack_options)
    else:
        strategy = CheckedStrategy(strategy, config.limits(), clip_norm=clip_norm)

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = record_to_state(arrays, device=config.device)
        loss, accuracy = evaluate(load_state(state, model, device=config.device), test, device=config.device)
        results.add(f"round-{server_round}", {"round": server_round, "test_loss": loss, "test_accuracy": accuracy})
        return MetricRecord({"test-loss": loss, "test-accuracy": accuracy})

    return strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=config.num_rounds,
                          evaluate_fn=evaluate_global)


def server_app(config: AppConfig | None = None) -> ServerApp:
    """The fedleak ``ServerApp``; without ``config`` it reads it from the run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, config or AppConfig.from_run_config(context.run_config))

    return app
