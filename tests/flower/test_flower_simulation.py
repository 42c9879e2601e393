"""A real Flower simulation (Ray backend, three SuperNodes): the audit strategy attacks every client with trap
weights in round 3; client 0 runs the detector mod, clients 1 and 2 do not."""
import json

import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import ArrayRecord, Context  # noqa: E402
from flwr.client.mod import make_ffn  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from fedleak.data import load_dataset, split_clients  # noqa: E402
from fedleak.flower import AuditStrategy, detector_mod, named_detectors, train_handler  # noqa: E402
from fedleak.flower.app import AppConfig, global_model, local_loader, node_partition  # noqa: E402
from fedleak.flower.simulation import simulate  # noqa: E402

pytestmark = [pytest.mark.flower, pytest.mark.slow]

CLIENTS = 3


class RecordingFedAvg(FedAvg):
    """FedAvg that notes, per round, which replies were errors and why."""

    def __init__(self, log, **options):
        super().__init__(**options)
        self.log = log

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.log[server_round] = [m.error.reason if m.has_error() else None for m in replies]
        return super().aggregate_train(server_round, replies)


def test_detector_refuses_trap_weights_and_the_audit_extracts_unprotected_clients_data(tmp_path):
    config = AppConfig(model_options={"widths": [500, 32]}, min_nodes=CLIENTS)
    load_local = local_loader(config)
    protect = detector_mod(load_local, named_detectors({"warmup_zscore": {"remember_rounds": 3}}))
    clients = ClientApp()

    @clients.train()
    def train(message, context: Context):
        mods = [protect] if node_partition(context)[0] == 0 else []
        return make_ffn(train_handler(load_local), mods)(message, context)

    data = load_dataset("bundled")
    replies: dict[int, list] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context):
        torch.manual_seed(0)
        model = global_model(config, data.info.input_shape, data.info.num_classes)
        fedavg = RecordingFedAvg(replies, fraction_evaluate=0.0, min_train_nodes=CLIENTS,
                                 min_available_nodes=CLIENTS)
        audit = AuditStrategy(fedavg, model, tmp_path, manipulation="trap_weights", rounds=[3], victims=CLIENTS,
                              reference=data.inputs(slice(None)), std=1e-4)
        audit.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

    simulate(server, clients, CLIENTS, cpus=2)

    # honest rounds: every client, the protected one included, trained and replied
    assert replies[1] == [None] * CLIENTS and replies[2] == [None] * CLIENTS
    refusals = [r for r in replies[3] if r is not None]
    assert len(refusals) == 1
    assert refusals[0].startswith("client 0 refused the model of round 3: warmup_zscore: ")
    assert "linear[0]" in refusals[0] and "> threshold" in refusals[0]

    cells = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sorted(c["status"] for c in cells) == ["attacked", "attacked", "refused"]
    # which client holds each training image of the bundled sample
    owner = {}
    for index, part in enumerate(split_clients(data, CLIENTS, seed=config.seed)):
        for image in part.train.x:
            owner[image.numpy().tobytes()] = index
    victims = set()
    for cell in cells:
        if cell["status"] != "attacked":
            continue
        # every point the attacker declares extracted is an exact copy of one of that client's training images
        assert cell["leaked"] == cell["declared"] >= 5
        owners = {owner[data.x[i].numpy().tobytes()] for i in cell["leaked_indices"]}
        assert len(owners) == 1 and owners != {0}
        victims |= owners
        saved = tmp_path / cell["file"]
        assert saved.exists() and saved.with_suffix(".png").exists()
    assert victims == {1, 2}
