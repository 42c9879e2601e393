"""``fedleak demo``: the end-to-end tour on the bundled data — an FL run, a malicious server's trap weights,
gradient inversion with and without defenses, and the client's detectors refusing the trap."""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from fedleak.experiments.fl_run import run_fl
from fedleak.fl import FederationSpec, FLConfig

# (folder, title, "module:function"); each step is ``step(out_dir, *, device, seed) -> dict`` of figures to print.
STEPS = (
    ("fl", "federated training (FedAvg, 10 clients)", "fedleak.experiments.demo:fl_step"),
    ("trap-weights", "a malicious server sends trap weights to one client",
     "fedleak.experiments.trap_weights:demo_step"),
    ("inversion", "an honest-but-curious server inverts B = 1 updates, with and without DP + CVB",
     "fedleak.experiments.inversion_demo:demo_step"),
    ("detection", "the client runs the detectors first and refuses the trap weights",
     "fedleak.experiments.detection:demo_step"),
)


def fl_step(out_dir: Path, *, device: str = "cpu", seed: int = 0) -> dict:
    """Ten clients train the Scheliga et al. CNN with FedAvg on the bundled Fashion-MNIST sample."""
    spec = FederationSpec(dataset="bundled", model="cnn", size=(32, 32))
    config = FLConfig(num_clients=10, rounds=8, batch_size=32, lr=2e-3, seed=seed, device=device)
    history = run_fl(spec, config, out_dir)
    return {
        "rounds": len(history.rounds),
        "first-round accuracy": round(history.rounds[0].test_accuracy, 4),
        "final accuracy": round(history.final_accuracy, 4),
        "chance": 0.1,
    }


def run_demo(out: str | Path, *, device: str = "cpu", seed: int = 0) -> dict[str, dict]:
    out = Path(out)
    figures = {}
    for index, (folder, title, target) in enumerate(STEPS, start=1):
        module, name = target.split(":")
        step = getattr(importlib.import_module(module), name)
        print(f"\n[{index}/{len(STEPS)}] {title}")
        start = time.perf_counter()
        figures[title] = step(out / f"{index}-{folder}", device=device, seed=seed)
        figures[title]["seconds"] = round(time.perf_counter() - start, 1)
        for key, value in figures[title].items():
            print(f"    {key}: {value}")
    return figures
