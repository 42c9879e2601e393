"""fl.Server checks every reply before aggregating (issue 22): one hostile client of five sends, round by round, each
kind of bad update; every round completes, the global model stays finite and equals the aggregate of the four good
clients' updates (a run where the hostile client refuses every round), and each dropped reply is recorded with its
reason in the round history and in the audit's audit.jsonl."""
import json

import numpy as np
import pytest
import torch

from fedleak.attacks.base import Reconstruction
from fedleak.cases import Audit, ThreatModel
from fedleak.fl import (ClientUpdate, FederationSpec, FLConfig, ModelRefused, ReplyLimits, ReplyRefused,
                        RobustAggregation, build_federation, check_update, clip_update, trimmed_mean)

HOSTILE = 2


def _first(update):
    return next(iter(update.tensors))


def _scaled(update, factor):
    return {k: v * factor for k, v in update.tensors.items()}


# round -> (what the hostile client does to its honest update, a word the drop reason must hold)
BAD = {
    1: (lambda u: {**u.tensors, _first(u): u.tensors[_first(u)][:-1]}, "shape"),
    2: (lambda u: {**u.tensors, "backdoor.weight": torch.zeros(3)}, "extra 'backdoor.weight'"),
    3: (lambda u: {k: v for k, v in u.tensors.items() if k != _first(u)}, "missing"),
    4: (lambda u: {**u.tensors, _first(u): np.array(["not", "numbers"])}, "not a tensor"),
    5: (lambda u: {**u.tensors, _first(u): u.tensors[_first(u)] * float("nan")}, "NaN/Inf"),
    6: (lambda u: {**u.tensors, _first(u): u.tensors[_first(u)] + float("inf")}, "NaN/Inf"),
    7: ("examples", 1e12),
    8: ("examples", -5),
    9: (lambda u: _scaled(u, 1e30), "L2 norm"),
}


def hostile(model, client, call_next):
    """Client 2's mod: trains honestly, then corrupts its update with this round's bad kind."""
    update = call_next(model)
    if client.client_id != HOSTILE:
        return update
    change, detail = BAD[client.round]
    if change == "examples":
        return ClientUpdate(update.client_id, update.round, update.kind, update.tensors, detail)
    return ClientUpdate(update.client_id, update.round, update.kind, change(update), update.num_examples)


def silent(model, client, call_next):
    """The reference: client 2 sends nothing at all."""
    if client.client_id == HOSTILE:
        raise ModelRefused(client.client_id, "silent", "sends nothing")
    return call_next(model)


class Watching:
    """An honest server's attack that records which clients' updates it was shown."""

    name = "watching"

    def __init__(self):
        self.sources = []

    def prepare(self, model, context):
        return model, None

    def reconstruct(self, observed, secret, knowledge, *, device="cpu"):
        self.sources.append(observed.sources)
        return Reconstruction(torch.zeros(0, 1, 28, 28))


def _run(mod, algorithm="fedavg", **options):
    config = FLConfig(algorithm=algorithm, num_clients=5, rounds=len(BAD), batch_size=8, local_steps=1,
                      optimizer="sgd", lr=0.1, server_lr=0.1, seed=3)
    spec = FederationSpec(model="fcnn", model_options={"widths": [16]})
    server = build_federation(spec, config, mods=(mod,), progress=False, **options)
    return server, server.run()


@pytest.mark.parametrize("algorithm", ["fedavg", "fedsgd"])
def test_a_hostile_client_is_dropped_every_round_and_the_model_is_the_good_clients_aggregate(tmp_path, algorithm):
    watching = Watching()
    audit = Audit(watching, ThreatModel(protocol=algorithm, rounds=tuple(BAD)), out=tmp_path)
    server, history = _run(hostile, algorithm, audit=audit)
    reference, _ = _run(silent, algorithm)

    assert len(history.rounds) == len(BAD)
    state, expected = server.model.state_dict(), reference.model.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values())
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    for record in history.rounds:
        assert list(record.dropped) == [HOSTILE]
        detail = BAD[record.round][1]
        word = "num-examples" if BAD[record.round][0] == "examples" else detail
        assert word in record.dropped[HOSTILE], (record.round, record.dropped)
    assert all(HOSTILE not in sources for sources in watching.sources)
    cells = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    dropped = [c for c in cells if c["status"] == "dropped reply"]
    assert [(c["round"], c["client"]) for c in dropped] == [(r, HOSTILE) for r in BAD]


def test_a_reply_within_the_configured_examples_is_accepted_and_one_beyond_is_not():
    expected = {"w": torch.zeros(2, 2)}
    update = {"w": torch.ones(2, 2)}
    assert check_update(update, expected, 8, max_examples=8) == 8
    with pytest.raises(ReplyRefused, match="from 1 to 8"):
        check_update(update, expected, 9, max_examples=8)
    with pytest.raises(ReplyRefused, match="dtype"):
        check_update({"w": torch.ones(2, 2, dtype=torch.float64)}, expected, 1)
    with pytest.raises(ReplyRefused, match="above the bound 1"):
        check_update(update, expected, 1, ReplyLimits(max_update_norm=1.0))
    with pytest.raises(ValueError, match="max_update_norm"):
        ReplyLimits(max_update_norm=float("nan"))


def test_clipping_bounds_one_clients_pull_and_the_trimmed_mean_cuts_the_outlier():
    updates = [ClientUpdate(i, 1, "delta", {"w": torch.full((3,), v)}, 1) for i, v in enumerate([1., 2., 3., 1e6])]
    clipped = clip_update(updates[3], 2.0)
    assert clipped.tensors["w"].norm().item() == pytest.approx(2.0)
    assert torch.equal(clip_update(updates[0], 10.0).tensors["w"], updates[0].tensors["w"])
    assert torch.allclose(trimmed_mean(updates, 0.25)["w"], torch.full((3,), 2.5))
    robust = RobustAggregation(clip_norm=1.0, trim_fraction=0.25)
    assert robust.mean(updates)["w"].norm().item() <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="trim_fraction"):
        RobustAggregation(trim_fraction=0.5)


def test_robust_aggregation_keeps_a_federation_with_a_scaling_client_close_to_the_honest_one():
    scale = {r: (lambda u: _scaled(u, 1e3), "") for r in BAD}

    def scaling(model, client, call_next):
        update = call_next(model)
        if client.client_id != HOSTILE:
            return update
        return ClientUpdate(update.client_id, update.round, update.kind, scale[client.round][0](update),
                            update.num_examples)

    honest, _ = _run(lambda m, c, n: n(m))
    plain, _ = _run(scaling)
    trimmed, _ = _run(scaling, robust=RobustAggregation(trim_fraction=0.2))
    clipped, _ = _run(scaling, robust=RobustAggregation(clip_norm=1.0))
    reference = honest.model.state_dict()

    def distance(server):
        return sum((server.model.state_dict()[k] - reference[k]).norm() ** 2 for k in reference) ** 0.5

    # measured distance to the honest federation's model: plain 7.8e3, trimmed mean 0.26, clipping 0.51
    assert distance(trimmed) < distance(plain) / 100
    assert distance(clipped) < distance(plain) / 100
