"""One hostile client of five must not stop or poison a Flower federation (issue 22).

Flower's own strategy loop (``Strategy.start``: FedAvg wrapped in fedleak's AuditStrategy) runs 9 rounds over an
in-process grid that hands each message to fedleak's ClientApp train function, as a SuperNode would. Client 2 sends,
round by round, each bad reply of the issue (wrong-shaped array, extra key, missing key, string array, NaN, Inf,
num-examples 1e12 and -5, values x 1e30). Client 2 is also a victim of trap weights in rounds 1 and 8. Every round completes; the global model is finite and equal, bit for bit,
to the run where client 2 sends an error reply every round (FedAvg of the four good replies); audit.jsonl and
report.json list each dropped reply with its reason."""
import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")
from flwr.app import Array, ArrayRecord, Context, Error, Message, Metadata, MetricRecord, RecordDict  # noqa: E402
from flwr.client.mod import make_ffn  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.serverapp.strategy import FedAvg, FedTrimmedAvg  # noqa: E402

from fedleak.fl import ReplyLimits  # noqa: E402
from fedleak.flower import AuditStrategy, train_handler  # noqa: E402
from fedleak.flower.app import AppConfig, global_model, local_loader  # noqa: E402
from fedleak.flower.reply_check import REPLY_DROPPED, CheckedStrategy  # noqa: E402
from fedleak.flower.client import server_round  # noqa: E402

pytestmark = pytest.mark.flower


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """What Flower's ServerApp process sets before a strategy builds messages."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)

CLIENTS, HOSTILE = 5, 2
NODES = {100 + i: i for i in range(CLIENTS)}  # node id -> partition id
CONFIG = AppConfig(model_options={"widths": [16]}, batch_size=8, seed=1)


def _first(record):
    return next(iter(record.keys()))


def _set(record, key, value):
    arrays = {k: (value if k == key else record[k]) for k in record.keys()}
    return ArrayRecord({k: v if isinstance(v, Array) else Array(np.asarray(v)) for k, v in arrays.items()})


def _array(record, key):
    return record[key].numpy()


BAD = {  # round -> (what client 2 does to its honest reply, words the drop reason holds)
    1: (lambda r, m: (_set(r, _first(r), _array(r, _first(r))[:-1]), m), "has shape"),
    2: (lambda r, m: (ArrayRecord({**{k: r[k] for k in r.keys()}, "backdoor": Array(np.zeros(3, "f4"))}), m),
        "extra 'backdoor'"),
    3: (lambda r, m: (ArrayRecord({k: r[k] for k in list(r.keys())[1:]}), m), "missing"),
    4: (lambda r, m: (_set(r, _first(r), np.array(["not", "numbers"])), m), "not a numeric tensor"),
    5: (lambda r, m: (_set(r, _first(r), _array(r, _first(r)) * np.float32("nan")), m), "NaN/Inf"),
    6: (lambda r, m: (_set(r, _first(r), _array(r, _first(r)) + np.float32("inf")), m), "NaN/Inf"),
    7: (lambda r, m: (r, MetricRecord({"num-examples": 1e12})), "num-examples"),
    8: (lambda r, m: (r, MetricRecord({"num-examples": -5})), "num-examples"),
    9: (lambda r, m: (ArrayRecord({k: Array(_array(r, k) * np.float32(1e30)) for k in r.keys()}), m), "L2 norm"),
}


def hostile(message, context, call_next):
    """Client 2's mod: trains honestly, then rewrites its reply with this round's bad kind."""
    reply = call_next(message, context)
    change, _ = BAD[server_round(message)]
    arrays, metrics = change(reply.content["arrays"], reply.content["metrics"])
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)


def silent(message, context, call_next):
    """The reference: client 2 answers every round with an error (a failure for Flower)."""
    return Message(Error(code=0, reason="client 2 sends nothing"), reply_to=message)


class LoopbackGrid(Grid):
    """Flower's grid in one process: each message goes to ``handler(message, context)`` of its node, in node
    order; each node keeps its context across rounds."""

    def __init__(self, handler):
        self.handler, self.contexts, self._run = handler, {}, None
        for node, partition in NODES.items():
            self.contexts[node] = Context(run_id=1, node_id=node, state=RecordDict(), run_config={},
                                          node_config={"partition-id": partition, "num-partitions": CLIENTS})

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def get_node_ids(self):
        return list(NODES)

    def push_messages(self, messages):
        raise NotImplementedError

    def pull_messages(self, message_ids):
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for index, message in enumerate(sorted(messages, key=lambda m: m.metadata.dst_node_id)):
            m = message.metadata
            message = Message(content=message.content, metadata=Metadata(
                run_id=1, message_id=f"m{index}-{m.group_id}", src_node_id=0, dst_node_id=m.dst_node_id,
                reply_to_message_id="", group_id=m.group_id, created_at=time.time(), ttl=3600.0,
                message_type=m.message_type))
            replies.append(self.handler(message, self.contexts[m.dst_node_id]))
        return replies


def _federation(mod, out, strategy=None):
    load_local = local_loader(CONFIG)

    def handler(message, context):
        mods = [mod] if context.node_config["partition-id"] == HOSTILE else []
        return make_ffn(train_handler(load_local), mods)(message, context)

    torch.manual_seed(0)
    model = global_model(CONFIG, (1, 28, 28), 10)
    strategy = strategy or FedAvg(fraction_evaluate=0.0, min_available_nodes=CLIENTS, min_train_nodes=CLIENTS)
    audit = AuditStrategy(strategy, model, out, manipulation="trap_weights", rounds=[1, 8],
                          victim_nodes=[100, 100 + HOSTILE],
                          std=1e-4)
    result = audit.start(grid=LoopbackGrid(handler), initial_arrays=ArrayRecord(model.state_dict()),
                         num_rounds=len(BAD))
    return result, audit


def test_a_hostile_client_is_dropped_every_round_and_the_model_is_fedavg_of_the_good_replies(tmp_path):
    result, audit = _federation(hostile, tmp_path / "hostile")
    reference, _ = _federation(silent, tmp_path / "silent")

    assert sorted(result.train_metrics_clientapp) == list(BAD)  # every round aggregated
    final, expected = result.arrays.to_torch_state_dict(), reference.arrays.to_torch_state_dict()
    assert all(torch.isfinite(v).all() for v in final.values())
    assert all(torch.equal(final[k], expected[k]) for k in expected)

    cells = [json.loads(line) for line in (tmp_path / "hostile" / "audit.jsonl").read_text().splitlines()]
    dropped = [c for c in cells if c["status"] == "dropped reply"]
    assert [(c["round"], c["client"]) for c in dropped] == [(r, 100 + HOSTILE) for r in BAD]
    for cell in dropped:
        assert BAD[cell["round"]][1] in cell["reason"], cell
    # the good victim was attacked; the hostile victim's reply (manipulated weights, num-examples -5 in round 8)
    # was dropped, so its manipulated model never reached the global model (checked above)
    assert [c["status"] for c in cells if c["client"] == 100] == ["attacked", "attacked"]
    report = json.loads((tmp_path / "hostile" / "report.json").read_text())
    listed = [(d["round"], d["client"]) for d in report["detection"] if d["status"] == "dropped reply"]
    assert listed == [(r, 100 + HOSTILE) for r in BAD]


def test_a_dropped_reply_is_a_failure_for_the_wrapped_strategy_and_trimmed_mean_composes(tmp_path):
    seen = {}

    class Recording(FedTrimmedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            seen[server_round] = sorted(m.error.code for m in replies if m.has_error())
            return super().aggregate_train(server_round, replies)

    strategy = Recording(beta=0.2, fraction_evaluate=0.0, min_available_nodes=CLIENTS, min_train_nodes=CLIENTS)
    checked = CheckedStrategy(strategy, ReplyLimits(max_examples=64))
    result = checked.start(grid=LoopbackGrid(lambda m, c: make_ffn(train_handler(local_loader(CONFIG)),
                                                                   [hostile] if c.node_config["partition-id"]
                                                                   == HOSTILE else [])(m, c)),
                           initial_arrays=ArrayRecord(global_model(CONFIG, (1, 28, 28), 10).state_dict()),
                           num_rounds=len(BAD))
    assert seen == {r: [REPLY_DROPPED] for r in BAD}
    assert all(list(d) == [100 + HOSTILE] for d in checked.dropped.values())
    assert all(torch.isfinite(v).all() for v in result.arrays.to_torch_state_dict().values())


def _round_changes(strategy):
    """The L2 norm of the global model's change in each round of a 3-round run with the hostile client scaling its
    reply's change by 1e3 (within the default norm bound)."""
    models = {}

    def scaling(message, context, call_next):
        reply = call_next(message, context)
        sent, got = message.content["arrays"], reply.content["arrays"]
        arrays = ArrayRecord({k: Array(_array(sent, k) + (_array(got, k) - _array(sent, k)) * np.float32(1e3))
                              for k in got.keys()})
        return Message(RecordDict({"arrays": arrays, "metrics": reply.content["metrics"]}), reply_to=message)

    load_local = local_loader(CONFIG)
    grid = LoopbackGrid(lambda m, c: make_ffn(train_handler(load_local), [scaling] if c.node_config["partition-id"]
                                              == HOSTILE else [])(m, c))
    strategy.start(grid=grid, initial_arrays=ArrayRecord(global_model(CONFIG, (1, 28, 28), 10).state_dict()),
                   num_rounds=3, evaluate_fn=lambda r, arrays: models.update({r: arrays.to_torch_state_dict()}))
    return [sum(((models[r][k] - models[r - 1][k]).double() ** 2).sum() for k in models[r]).sqrt().item()
            for r in (1, 2, 3)]


def test_norm_clipping_bounds_each_rounds_change_of_the_global_model():
    def fedavg():
        return FedAvg(fraction_evaluate=0.0, min_available_nodes=CLIENTS, min_train_nodes=CLIENTS)

    plain = _round_changes(CheckedStrategy(fedavg()))
    clipped = _round_changes(CheckedStrategy(fedavg(), clip_norm=0.05))
    assert all(c <= 0.05 + 1e-6 for c in clipped), clipped  # a weighted mean of clipped changes
    assert all(p > 1.0 for p in plain), plain  # the scaling client pulls the plain mean far


def test_the_apps_server_drops_a_nan_reply_without_an_attack_and_with_robust_aggregation_on(tmp_path):
    import dataclasses

    from fedleak.flower.app import run_server

    def nan(message, context, call_next):
        reply = call_next(message, context)
        arrays = reply.content["arrays"]
        bad = _set(arrays, _first(arrays), _array(arrays, _first(arrays)) * np.float32("nan"))
        return Message(RecordDict({"arrays": bad, "metrics": reply.content["metrics"]}), reply_to=message)

    config = dataclasses.replace(CONFIG, num_rounds=2, min_nodes=CLIENTS, trim_beta=0.2, clip_norm=1.0,
                                 results=str(tmp_path))
    load_local = local_loader(config)
    result = run_server(LoopbackGrid(lambda m, c: make_ffn(train_handler(load_local), [nan] if
                                                           c.node_config["partition-id"] == HOSTILE else [])(m, c)),
                        config)
    rounds = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert all(np.isfinite(r["test_loss"]) for r in rounds) and rounds[2]["test_loss"] < rounds[0]["test_loss"]
    assert all(torch.isfinite(v).all() for v in result.arrays.to_torch_state_dict().values())


def test_screening_drops_a_second_reply_a_nan_metric_and_metric_keys_unlike_the_rounds():
    from flower_messages import train_message

    from fedleak.flower.records import state_to_record
    from fedleak.flower.reply_check import screen_replies

    sent = {"w": torch.zeros(3)}

    def reply(node, metrics):
        message = train_message(sent, node_id=node)
        return Message(RecordDict({"arrays": state_to_record({"w": torch.ones(3)}),
                                   "metrics": MetricRecord(metrics)}), reply_to=message)

    replies = [reply(1, {"num-examples": 4}), reply(2, {"num-examples": 4}), reply(3, {"num-examples": 4}),
               reply(3, {"num-examples": 4}), reply(4, {"num-examples": 4, "loss": float("nan")}),
               reply(5, {"num-examples": 4, "extra": 1.0})]
    out, dropped, accepted = screen_replies(replies, lambda node: sent)
    assert sorted(accepted) == [1, 2]
    assert "more than one reply" in dropped[3] and "'loss' is not a finite number" in dropped[4]
    assert "metric keys ['extra', 'num-examples'] differ from the round's ['num-examples']" in dropped[5]
    assert [m.has_error() for m in out] == [False, False, True, True, True, True]


def _checked_start(grid):
    """CheckedStrategy around FedAvg from the seeded global model, every round of BAD; returns the final arrays
    and the dropped replies per round."""
    torch.manual_seed(0)
    model = global_model(CONFIG, (1, 28, 28), 10)
    strategy = CheckedStrategy(FedAvg(fraction_evaluate=0.0, min_available_nodes=CLIENTS, min_train_nodes=CLIENTS))
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=len(BAD))
    return result.arrays.to_torch_state_dict(), strategy.dropped


@pytest.mark.slow
def test_in_flowers_simulation_engine_the_hostile_client_is_dropped_and_the_rounds_complete(tmp_path):
    """The same five clients in Flower's real simulation engine (Ray, one ClientApp per SuperNode): the final
    model is finite and equals, up to the order of the float sum, the in-process run where client 2 sends
    nothing; every round dropped exactly client 2's reply."""
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from fedleak.flower.simulation import simulate

    load_local = local_loader(CONFIG)

    def partition_2_hostile(message, context, call_next):
        if context.node_config["partition-id"] == HOSTILE:
            return hostile(message, context, call_next)
        return call_next(message, context)

    client = ClientApp()
    client.train(mods=[partition_2_hostile])(train_handler(load_local))
    server, outcome = ServerApp(), {}

    @server.main()
    def main(grid, context):
        outcome["arrays"], outcome["dropped"] = _checked_start(grid)

    simulate(server, client, CLIENTS, cpus=2)
    reference, _ = _checked_start(LoopbackGrid(
        lambda m, c: make_ffn(train_handler(load_local), [silent] if c.node_config["partition-id"] == HOSTILE
                              else [])(m, c)))
    final = outcome["arrays"]
    assert all(torch.isfinite(v).all() for v in final.values())
    assert all(torch.allclose(final[k], reference[k], rtol=1e-5, atol=1e-7) for k in reference)
    assert sorted(outcome["dropped"]) == list(BAD)
    assert all(len(nodes) == 1 for nodes in outcome["dropped"].values())  # one node per round: the hostile one
    for round, nodes in outcome["dropped"].items():
        assert BAD[round][1] in next(iter(nodes.values())), (round, nodes)
