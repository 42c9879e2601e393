"""Configuration of a federated-learning run."""
from __future__ import annotations

from dataclasses import asdict, dataclass

ALGORITHMS = ("fedavg", "fedsgd")
OPTIMIZERS = ("adam", "sgd")


@dataclass
class FLConfig:
    """One FL run. FedSGD: each selected client sends one gradient of one batch of ``batch_size``.
    FedAvg: each client trains ``local_epochs`` epochs (or ``local_steps`` steps when set) with ``optimizer``
    and sends the change of its parameters; the server averages weighted by ``num_examples``.
    Early stopping ends the run when the mean client validation loss has not improved for ``patience`` rounds
    (``patience=None`` disables it). Defaults follow Scheliga et al. §5.1 (Adam 1e-3, batch 64, one epoch)."""

    algorithm: str = "fedavg"
    num_clients: int = 10
    rounds: int = 10
    fraction: float = 1.0
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    server_lr: float = 1.0  # FedSGD: global step size on the averaged gradient (SGD)
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown FL algorithm {self.algorithm!r}; valid: {', '.join(ALGORITHMS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction of clients per round must be in (0, 1], got {self.fraction}")
        for name in ("num_clients", "rounds", "batch_size", "local_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.local_steps is not None and self.local_steps < 1:
            raise ValueError(f"local_steps must be >= 1 or None, got {self.local_steps}")

    def to_dict(self) -> dict:
        return asdict(self)
