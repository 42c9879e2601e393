"""The Flower AuditStrategy writes the report `fedleak audit` writes (issue 15), driven message by message as
Flower's engines drive it: trap weights to two clients, their replies after one local SGD step, the report."""
import json

import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp.strategy import Strategy  # noqa: E402
from flower_messages import train_message  # noqa: E402

from fedleak.data import load_dataset  # noqa: E402
from fedleak.fl import task_loss  # noqa: E402
from fedleak.flower import AuditStrategy  # noqa: E402
from fedleak.flower.records import record_to_state, state_to_record  # noqa: E402
from fedleak.models import build_model  # noqa: E402

pytestmark = pytest.mark.flower
NODES, BATCH = (11, 12), 8


class TwoNodes(Strategy):
    """A strategy that trains nodes 11 and 12 every round and aggregates nothing."""

    def configure_train(self, server_round, arrays, config, grid):
        return [train_message(record_to_state(arrays), round=server_round, node_id=n) for n in NODES]

    def aggregate_train(self, server_round, replies):
        return None, None

    def configure_evaluate(self, server_round, arrays, config, grid):
        return []

    def aggregate_evaluate(self, server_round, replies):
        return None

    def summary(self):
        pass


def _reply(message, model, x, y):
    """The client's side: one SGD step of its batch on the model it received, the new weights sent back."""
    local = build_model("fcnn", (1, 28, 28), 10, widths=(500, 32))
    local.load_state_dict(record_to_state(message.content["arrays"]))
    loss = task_loss(local, local(x), y)
    loss.backward()
    with torch.no_grad():
        for p in local.parameters():
            p -= 0.1 * p.grad
    content = RecordDict({"arrays": state_to_record(local.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(y)})})
    return Message(content, reply_to=message)


def test_audit_strategy_writes_the_audit_report(tmp_path):
    torch.manual_seed(0)
    data = load_dataset("bundled")
    batches = {n: (data.inputs(slice(i * BATCH, (i + 1) * BATCH)), data.y[i * BATCH:(i + 1) * BATCH])
               for i, n in enumerate(NODES)}
    reference = torch.cat([x for x, _ in batches.values()])
    model = build_model("fcnn", (1, 28, 28), 10, widths=(500, 32))
    strategy = AuditStrategy(TwoNodes(), model, tmp_path, manipulation="trap_weights", rounds=[1], victims=2,
                             reference=reference, std=1e-4)
    messages = strategy.configure_train(1, ArrayRecord(model.state_dict()), ConfigRecord(), None)
    replies = [_reply(m, model, *batches[m.metadata.dst_node_id]) for m in messages]
    strategy.aggregate_train(1, replies)
    report = strategy.write_report()

    assert (tmp_path / "report.html").is_file()
    assert json.loads((tmp_path / "report.json").read_text())["leakage"] == report["leakage"]
    rows = report["leakage"]
    assert [r["attack"] for r in rows] == [f"trap_weights, round 1, client {n}" for n in NODES]
    for row in rows:  # exact extractions among the 16 reference images (the two true batches)
        assert row["leaked"] >= BATCH // 2  # measured: each client's whole batch, 8 of 8
        # recall counts the client's own samples (its reply's num-examples), not all 16 reference images
        assert row["true_points"] == BATCH and row["recall"] == row["leaked"] / BATCH
        assert (tmp_path / "grids" / row["grid"]).is_file()
    assert "How much does an update leak?" in (tmp_path / "report.html").read_text()
