"""What one ``fedleak audit`` is asked to do, checked when it is built: every option error is a ``ValueError`` naming
the option, raised before any data is loaded or any folder touched. Options that need the data (``victims``,
``secure_aggregation`` against the number of training samples) are checked by :mod:`fedleak.audit.checks`."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import torch.nn as nn

from fedleak.attacks import ATTACKS, MALICIOUS
from fedleak.cases import ThreatModel
from fedleak.checks import check_device, check_number
from fedleak.defenses import parse_defenses
from fedleak.registry import parse_options

DP_SIGMA = 1e-3  # paper 001 §4.1's DP level, the audit's default DP defense
DEFAULT_DEFENSES = ("dp:sigma=1e-3", "cvb")  # DP_SIGMA, as users write it
# for a model with BatchNorm, DP-SGD (per-sample gradients) trains it with GroupNorm in place of every BatchNorm
BATCHNORM_DP = "dp:sigma=1e-3:batchnorm=group"
NONE = "none"
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit int


@dataclass
class AuditConfig:
    """One audit. ``model``/``data``: see :mod:`fedleak.audit.inputs`; ``weights``: a safetensors state dict loaded
    key by key into the model; ``threat``: "honest" or "malicious"; ``protocol``: "fedsgd" or
    "fedavg[:steps=S][:lr=L]"; ``secure_aggregation``: N clients per round whose updates the server sees only as
    their weighted mean (0: each update); ``defenses``: each a combination of :func:`fedleak.defenses.
    apply_defenses`; ``attacks``: names (``None``: every attack that applies); ``victims`` clients of
    ``batch_size`` per attacked round; ``iterations``: inversion budget (``None``: the preset's full schedule);
    ``utility_rounds``/``utility_clients``/``utility_samples``: the FedAvg run that prices each defense (on at most
    ``utility_samples`` training samples, a seeded draw; ``None``: all); ``seed``: every draw of every
    cell derives from it (:mod:`fedleak.seeds`)."""

    model: str
    data: str
    weights: str | None = None
    root: str | None = None
    size: tuple[int, int] | None = (32, 32)
    threat: str = "honest"
    protocol: str = "fedsgd"
    batch_size: int = 1
    secure_aggregation: int = 0
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    attacks: tuple[str, ...] | None = None
    victims: int = 8
    iterations: int | None = None
    utility_rounds: int = 10
    utility_clients: int = 10
    utility_samples: int | None = None
    quick: bool = False
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_device(self.device)
        check_number("--seed", self.seed, low=0, high=MAX_SEED, integer=True)
        self.size = tuple(self.size) if self.size else None
        self.defenses = tuple(d for d in self.defenses if d.strip().lower() != NONE)
        self.attacks = None if self.attacks is None else tuple(self.attacks)
        ThreatModel(server=self.threat)  # a clear error for an unknown threat
        protocol_options(self.protocol)
        for defense in self.defenses:
            parse_defenses(defense)
        for name in self.attacks or ():
            ATTACKS.get(name)
            if self.threat == "honest" and name in MALICIOUS:
                raise ValueError(f"attack {name!r} manipulates the model; an honest server cannot run it "
                                 f"(use --threat malicious)")
        for name in ("batch_size", "victims", "utility_rounds", "utility_clients"):
            check_number(f"--{name.replace('_', '-')}", getattr(self, name), low=1, integer=True)
        if self.utility_samples is not None:
            check_number("utility_samples", self.utility_samples, low=1, integer=True)
        if self.iterations is not None:
            check_number("--iterations", self.iterations, low=1, integer=True)
        check_number("--secure-aggregation", self.secure_aggregation, low=0, integer=True)
        if self.secure_aggregation == 1:
            raise ValueError("--secure-aggregation needs N >= 2 clients (0: off), got 1")

    @classmethod
    def quick_profile(cls, **overrides) -> AuditConfig:
        """A few minutes on 2 CPU cores: 4 victims, 200 inversion iterations, behind each defense only the strongest
        inversion preset that applies (:mod:`fedleak.audit.strongest`; when ``attacks`` is not chosen), 3 FedAvg
        rounds of 5 clients on at most 2000 training samples per defense. The report says what it leaves out."""
        return cls(**{"victims": 4, "iterations": 200, "utility_rounds": 3, "utility_clients": 5,
                      "utility_samples": 2000, "quick": True, **overrides})

    @property
    def clients_per_round(self) -> int:
        """The clients of an attacked round: the secure-aggregation group, or the victims."""
        return self.secure_aggregation or self.victims

    def to_dict(self) -> dict:
        return asdict(self)


def default_defenses(config: AuditConfig, model) -> AuditConfig:
    """``config`` with the defenses the audit uses for ``model``: the defaults as they are, except that a model
    with BatchNorm gets :data:`BATCHNORM_DP` for DP-SGD (``dp`` alone refuses batch norm); chosen ones unchanged."""
    if config.defenses != DEFAULT_DEFENSES or not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                      for m in model.modules()):
        return config
    return replace(config, defenses=tuple(BATCHNORM_DP if d == DEFAULT_DEFENSES[0] else d for d in config.defenses))


def protocol_options(protocol: str) -> dict:
    """``"fedavg:steps=5:lr=0.01"`` -> FLConfig fields (algorithm, local_steps, lr, optimizer); an error naming
    ``--protocol`` for an unknown protocol or option, ``steps`` below 1 or a learning rate that is not a finite
    number > 0."""
    name, *parts = protocol.split(":")
    if name not in ("fedsgd", "fedavg"):
        raise ValueError(f"--protocol {protocol!r}: must be fedsgd or fedavg[:steps=S][:lr=L]")
    options = parse_options(parts, "--protocol")
    unknown = sorted(set(options) - ({"steps", "lr"} if name == "fedavg" else set()))
    if unknown:
        raise ValueError(f"--protocol {protocol!r}: unknown option(s) {', '.join(unknown)} (fedavg takes steps, lr)")
    fields = {"algorithm": name}
    if name == "fedavg":
        steps = check_number("--protocol fedavg steps", options.get("steps", 5), low=1, integer=True)
        lr = check_number("--protocol fedavg lr", options.get("lr", 0.01), low=0, low_open=True)
        fields.update(local_steps=int(steps), lr=float(lr), optimizer="sgd")
    return fields


def slug(text: str) -> str:
    """``text`` as a file name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or NONE
