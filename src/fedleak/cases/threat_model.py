"""Who the server is and what it may see (breaching's "case"; paper 000 §2's threat models)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

SERVERS = ("honest", "malicious")
OBSERVES = ("updates", "secure_aggregate")
PROTOCOLS = ("fedsgd", "fedavg")


@dataclass(frozen=True)
class ThreatModel:
    """``server``: "honest" (honest-but-curious: it sends the true global model and only reads what comes back) or
    "malicious" (it may send any model, a different one to each client). ``observes``: each client's own
    "updates", or only the "secure_aggregate" of the round (the ``num_examples``-weighted mean of every answering
    client's update; never an individual one). ``protocol``: the FL recipe the attack expects ("fedsgd": one
    gradient per client; "fedavg": the change of the weights after local training), checked against the
    federation's. ``victims``: the targeted clients (``None``: every client of the round), ``rounds``: the rounds
    attacked."""

    server: str = "honest"
    observes: str = "updates"
    protocol: str = "fedsgd"
    victims: tuple[int, ...] | None = None
    rounds: tuple[int, ...] = (1,)

    def __post_init__(self):
        for name, valid in (("server", SERVERS), ("observes", OBSERVES), ("protocol", PROTOCOLS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"threat model {name}={getattr(self, name)!r} is not one of {', '.join(valid)}")
        rounds = tuple(sorted({int(r) for r in self.rounds}))
        if not rounds or rounds[0] < 1:
            raise ValueError(f"attacked rounds must be numbers >= 1, got {self.rounds}")
        object.__setattr__(self, "rounds", rounds)
        if self.victims is not None:
            victims = tuple(sorted({int(v) for v in self.victims}))
            if not victims or victims[0] < 0:
                raise ValueError(f"victims must be client ids >= 0, got {self.victims}")
            object.__setattr__(self, "victims", victims)

    def targets(self, round: int, clients: list[int]) -> list[int]:
        """The clients attacked among ``clients`` (those selected) in ``round``."""
        if round not in self.rounds:
            return []
        return [c for c in clients if self.victims is None or c in self.victims]

    def to_dict(self) -> dict:
        return asdict(self)
