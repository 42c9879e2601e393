"""The cases layer: what an Audit lets the server see and send (issue 9)."""
import copy

import pytest
import torch

from fedleak.attacks.base import AttackContext, Reconstruction
from fedleak.cases import Audit, ThreatModel
from fedleak.fl import FederationSpec, FLConfig, build_federation, weighted_mean

SPEC = FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (64, 16)})


class Recording:
    """An attack that sends the model unchanged and records what it observed (the test's window on the server)."""

    name = "recording"

    def __init__(self):
        self.observed = []

    def prepare(self, model, context):
        return model, None

    def reconstruct(self, observed, secret, knowledge, *, device="cpu"):
        self.observed.append(observed)
        return Reconstruction(torch.zeros(0, 1, 28, 28))


def test_secure_aggregation_shows_the_audit_only_the_weighted_mean_of_the_round():
    config = FLConfig(algorithm="fedsgd", num_clients=4, rounds=1, batch_size=16, seed=0)
    attack = Recording()
    audit = Audit(attack, ThreatModel(observes="secure_aggregate"))
    per_client = Audit(Recording(), ThreatModel())
    server = build_federation(SPEC, config, audit=audit, progress=False)
    twin = build_federation(SPEC, config, audit=per_client, progress=False)
    server.run(), twin.run()
    (observed,) = attack.observed
    assert observed.sources == (-1,) and observed.num_examples == (64,)
    updates = per_client.attack.observed[0]  # the same round, seen update by update
    assert updates.sources == (0, 1, 2, 3)
    individual = [updates.row(i) for i in range(4)]
    mean = {k: sum(u[k] for u in individual) / 4 for k in individual[0]}  # equal batch sizes: the plain mean
    for key, value in observed.updates.items():
        assert value.shape[0] == 1
        torch.testing.assert_close(value[0], mean[key])
        for update in individual:  # no individual update is what the server saw
            assert not torch.allclose(value[0], update[key])
    assert [r.source for r in audit.records] == [-1] and audit.records[0].clients == (0, 1, 2, 3)


class Inconsistent:
    """Model inconsistency: client 1 gets a model whose first layer is zero, every other target the global model."""

    name = "inconsistent"

    def prepare(self, model, context: AttackContext):
        odd = copy.deepcopy(model)
        with torch.no_grad():
            odd.fc1.linear.weight.zero_()
        return {c: (odd if c == 1 else model) for c in context.clients}, None

    def reconstruct(self, observed, secret, knowledge, *, device="cpu"):
        return Reconstruction(torch.zeros(0, 1, 28, 28))


def test_two_clients_receive_two_different_models_in_one_round():
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=1, batch_size=8, seed=0)
    audit = Audit(Inconsistent(), ThreatModel(server="malicious"))
    server = build_federation(SPEC, config, audit=audit, progress=False)
    server.run()
    observed = audit.records[0].observed
    assert observed.sources == (0, 1)
    assert observed.sent[0] is not observed.sent[1]
    assert float(observed.sent[1].fc1.linear.weight.detach().abs().sum()) == 0.0
    assert float(observed.sent[0].fc1.linear.weight.detach().abs().sum()) > 0.0
    # with a zero first layer, client 1's second layer sees constant features: its gradient rows are multiples of
    # one vector (rank <= 1), client 0's are not
    second = observed.updates["fc2.linear.weight"]
    assert torch.linalg.matrix_rank(second[1]) <= 1 < torch.linalg.matrix_rank(second[0])


def test_an_honest_server_cannot_send_a_manipulated_model():
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=1, batch_size=8, seed=0)
    server = build_federation(SPEC, config, audit=Audit("trap_weights"), progress=False)
    with pytest.raises(ValueError, match="honest server cannot run it"):
        server.run()


def test_the_threat_model_protocol_must_match_the_federation():
    config = FLConfig(algorithm="fedavg", num_clients=2, rounds=1, batch_size=8, seed=0)
    with pytest.raises(ValueError, match="expects fedsgd but the federation runs fedavg"):
        build_federation(SPEC, config, audit=Audit("passive"), progress=False)


def test_trap_weights_audit_scores_exact_extraction_against_the_clients_batch(tmp_path):
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=1, batch_size=20, seed=0)
    audit = Audit("trap_weights", ThreatModel(server="malicious", victims=(1,)), out=tmp_path, scale_factor=0.8)
    build_federation(FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (500, 16)}),
                     config, audit=audit, progress=False).run()
    (record,) = audit.records
    assert record.source == 1 and record.status == "attacked"
    assert record.scores["leaked"] >= 5 and record.scores["leaked"] <= record.scores["declared"]
    assert record.scores["R"] >= record.scores["recall"] > 0.25
    assert (tmp_path / "audit.jsonl").exists()
    assert (tmp_path / "reconstructions" / "round-1-client-1.safetensors").exists()


def test_weighted_mean_weighs_by_examples():
    from fedleak.fl import ClientUpdate
    a = ClientUpdate(0, 1, "gradient", {"w": torch.tensor([1.0])}, 1)
    b = ClientUpdate(1, 1, "gradient", {"w": torch.tensor([4.0])}, 3)
    assert float(weighted_mean([a, b])["w"]) == pytest.approx(3.25)
