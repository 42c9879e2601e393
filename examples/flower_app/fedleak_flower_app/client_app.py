"""The ClientApp: fedleak's client (local data from ``partition-id`` / ``num-partitions``, FedSGD training) with,
as the run config asks, the detector mod and update defenses (see fedleak.flower.app)."""
from fedleak.flower.app import client_app

app = client_app()
