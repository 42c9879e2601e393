"""``fedleak flower-demo``: a malicious server with trap weights in a Flower simulation, without and with the
client-side detector.

Ten clients train Boenisch et al.'s FC-NN on the bundled Fashion-MNIST sample (FedSGD: one SGD step on a batch of
64 per round). The server is an :class:`~fedleak.flower.AuditStrategy` around FedAvg: after two honest rounds, in
round 3, it sends trap weights (paper 002 Algorithm 1) to three clients and extracts their inputs from their
updates. The federation runs twice: once with plain clients, once with fedleak's detector mod (architecture check +
warm-up Z-score remembering the accepted rounds, Wang & Li §5). The figures are the training points leaked
(reconstructions that are exact copies of a client's training images), per run and per attacked client, and the
honest models the detector refused (false alarms).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from fedleak.flower.app import AppConfig, client_app, server_app
from fedleak.flower.simulation import simulate

RUNS = (("without detector", "without-detector", False), ("with detector", "with-detector", True))


def _cells(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def flower_demo(out: str | Path, *, clients: int = 10, rounds: int = 3, attack_rounds: tuple[int, ...] = (3,),
                victims: int = 3, device: str = "cpu", seed: int = 0, cpus: int | None = None,
                verbose: bool = False) -> dict[str, dict]:
    """Run the federation without and with the detector mod; returns per run the points leaked, the attacked
    clients that refused, the final test accuracy and the wall time (seconds)."""
    if not 1 <= victims <= clients:
        raise ValueError(f"victims must be between 1 and the {clients} clients, got {victims}")
    if not attack_rounds or not all(1 <= r <= rounds for r in attack_rounds):
        raise ValueError(f"attack rounds must be among rounds 1..{rounds}, got {list(attack_rounds)}")
    out = Path(out)
    figures = {}
    for title, folder, detect in RUNS:
        config = AppConfig(num_rounds=rounds, min_nodes=clients, detect=detect, attack="trap_weights",
                           attack_rounds=list(attack_rounds), victims=victims, results=str(out / folder),
                           seed=seed, device=device)
        start = time.perf_counter()
        simulate(server_app(config), client_app(config), clients, cpus=cpus, device=device, verbose=verbose)
        seconds = time.perf_counter() - start
        audit = _cells(out / folder / "audit" / "audit.jsonl")
        accuracy = [c["test_accuracy"] for c in _cells(out / folder / "rounds.jsonl")]
        refused = [c for c in audit if c["status"] == "refused"]
        attacked = [c for c in audit if c["status"] == "attacked"]
        false_alarms = [c for c in audit if c["status"] == "refused honest model"]
        targeted = [c for c in audit if c["status"] != "refused honest model"]
        figures[title] = {
            "clients attacked": len(targeted),
            "attacked clients that refused": len(refused),
            "honest models refused (false alarms)": len(false_alarms),
            "points leaked": sum(c.get("leaked", 0) for c in attacked),
            "leaked per attacked client": {f"round {c['round']} node {c['client']}": c.get("leaked", 0)
                                           if c["status"] == "attacked" else c["status"] for c in targeted},
            "refusal": refused[0]["reason"] if refused else None,
            "final test accuracy": round(accuracy[-1], 4) if accuracy else None,
            "seconds": round(seconds, 1),
        }
    (out / "flower-demo.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures

