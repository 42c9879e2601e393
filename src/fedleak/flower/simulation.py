"""Running a fedleak Flower app in Flower's simulation engine (Ray) from Python, quietly and within the CPUs at hand.

``flwr run`` is Flower's way to launch an app; :func:`simulate` calls ``flwr.simulation.run_simulation`` directly
so that a demo or a test can pass app objects built in Python. Flower's telemetry, update check and runtime
dependency installation are switched off (:data:`FLOWER_ENV`).
"""
from __future__ import annotations

import logging
import os
import warnings

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
              "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


def backend_config(*, cpus: int | None = None, device: str = "cpu") -> dict:
    """Ray backend settings: each ClientApp takes one CPU (and a share of the GPU for ``device="cuda..."``), and
    the simulation uses ``cpus`` CPUs (default: all)."""
    cpus = cpus or os.cpu_count() or 1
    resources = {"num_cpus": 1, "num_gpus": 1.0 / cpus if str(device).startswith("cuda") else 0.0}
    init = {"num_cpus": cpus, "num_gpus": 1 if str(device).startswith("cuda") else 0,
            "logging_level": logging.ERROR, "log_to_driver": False}
    return {"client_resources": resources, "init_args": init}


def simulate(server: ServerApp, client: ClientApp, num_supernodes: int, *, cpus: int | None = None,
             device: str = "cpu", verbose: bool = False) -> None:
    """Run ``server`` and ``client`` with ``num_supernodes`` virtual SuperNodes (``partition-id`` 0..n-1)."""
    from flwr.simulation import run_simulation  # imports Ray; only when a simulation runs

    if num_supernodes < 1:
        raise ValueError(f"a simulation needs at least one SuperNode, got {num_supernodes}")
    os.environ.update(FLOWER_ENV)
    flower_logger = logging.getLogger("flwr")
    level = flower_logger.level
    if not verbose:
        flower_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            run_simulation(server_app=server, client_app=client, num_supernodes=num_supernodes,
                           backend_config=backend_config(cpus=cpus, device=device))
    finally:
        flower_logger.setLevel(level)
