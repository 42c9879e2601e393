"""Suite-wide settings: one torch thread per test worker (``make test`` runs two workers on two cores), and
``benchmarks/`` on the path for the one zoo of ordinary models (``benchmarks/ordinary_zoo.py``)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
