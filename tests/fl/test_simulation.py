import pytest
import torch
import torch.nn as nn

from fedleak.attacks.base import Reconstruction
from fedleak.cases import Audit, ThreatModel
from fedleak.fl import ClientUpdate, FederationSpec, FLConfig, ModelRefused, aggregate, build_federation


def small_run(**overrides):
    config = FLConfig(**{"num_clients": 5, "rounds": 3, "batch_size": 32, "lr": 2e-3, "seed": 1, **overrides})
    return build_federation(FederationSpec(dataset="bundled", model="cnn", size=(32, 32)), config, progress=False)


def test_fedavg_accuracy_rises_well_above_chance():
    history = small_run().run()
    accs = [r.test_accuracy for r in history.rounds]
    assert accs[-1] > 0.6, accs  # 10 classes: chance is 0.1
    assert accs[-1] > accs[0] - 0.02


def test_same_seed_same_numbers_and_other_seed_differs():
    a = small_run(rounds=2).run()
    b = small_run(rounds=2).run()
    c = small_run(rounds=2, seed=2).run()
    assert [r.test_loss for r in a.rounds] == [r.test_loss for r in b.rounds]
    assert [r.test_loss for r in a.rounds] != [r.test_loss for r in c.rounds]


class Watching:
    """An honest server's attack that only keeps what it was shown (the test's window on the server)."""

    name = "watching"

    def __init__(self):
        self.prepared, self.observed = [], []

    def prepare(self, model, context):
        self.prepared.append((context.round, context.clients))
        return model, None

    def reconstruct(self, observed, secret, knowledge, *, device="cpu"):
        self.observed.append(observed)
        return Reconstruction(torch.zeros(0, 1, 32, 32))


def test_fedsgd_sends_one_batch_gradient_and_the_audit_sees_it():
    watching = Watching()
    config = FLConfig(algorithm="fedsgd", num_clients=4, rounds=2, batch_size=8, fraction=0.5, seed=0)
    audit = Audit(watching, ThreatModel(rounds=(1, 2)))
    server = build_federation(FederationSpec(size=(32, 32)), config, audit=audit, progress=False)
    params = {n: p.detach().clone() for n, p in server.model.named_parameters()}
    history = server.run()
    # 2 of 4 clients in each of 2 rounds
    assert [(r, len(c)) for r, c in watching.prepared] == [(1, 2), (2, 2)]
    assert [o.sources for o in watching.observed] == [tuple(r.clients) for r in history.rounds]
    assert all(o.kind == "gradient" and o.num_examples == (8, 8) for o in watching.observed)
    assert set(watching.observed[0].updates) == set(params)
    record = audit.records[0]  # the client's true batch came beside its update, for scoring only
    assert record.scores == {"points": 0, "declared": 0, "true_points": 8, "leaked": 0, "leaked_indices": [],
                             "recall": 0.0, "near_recall_psnr30": 0.0, "best_psnr": 0.0}  # no candidate: 0 dB
    moved = any(not torch.equal(params[n], p) for n, p in server.model.named_parameters())
    assert moved


def test_refusing_client_is_recorded_and_left_out():
    def refuse(model, client, call_next):
        if client.client_id == 0:
            raise ModelRefused(client.client_id, "test-detector", "looks wrong")
        return call_next(model)

    config = FLConfig(num_clients=3, rounds=1, local_steps=1, seed=0)
    server = build_federation(FederationSpec(size=(32, 32)), config, mods=[refuse], progress=False)
    record = server.run().rounds[0]
    assert record.refused == {0: "test-detector: looks wrong"}


def test_update_mod_rewrites_the_update():
    def zero(model, client, call_next):
        update = call_next(model)
        update.tensors = {k: torch.zeros_like(v) for k, v in update.tensors.items()}
        return update

    config = FLConfig(num_clients=2, rounds=1, local_steps=2, seed=0)
    server = build_federation(FederationSpec(size=(32, 32)), config, mods=[zero], progress=False)
    before = {k: v.clone() for k, v in server.model.state_dict().items()}
    server.run()
    assert all(torch.equal(before[k], v) for k, v in server.model.state_dict().items())


def test_aggregate_is_the_example_weighted_mean():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ups = [ClientUpdate(0, 1, "delta", {"weight": torch.ones(1, 2)}, 30),
           ClientUpdate(1, 1, "delta", {"weight": torch.full((1, 2), 5.0)}, 10)]
    aggregate(model, ups)
    assert torch.allclose(model.weight, torch.full((1, 2), 2.0))


def test_early_stopping_on_validation_loss():
    # lr = 0: the validation loss never improves after round 1, so patience 2 ends the run after round 3
    history = small_run(rounds=10, patience=2, lr=0.0).run()
    assert history.stopped_early and history.best_round == 1
    assert len(history.rounds) == 3
    assert not small_run(rounds=3, patience=2).run().stopped_early


def test_mismatched_model_and_data_shapes_fail_before_training():
    from fedleak.models import build_model

    wrong = build_model("cnn", (3, 32, 32), 10)  # data below is (1, 32, 32)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*\(1, 32, 32\)"):
        build_federation(FederationSpec(size=(32, 32)), FLConfig(num_clients=2, rounds=1), model=wrong, progress=False)


def test_bad_config_names_the_problem():
    with pytest.raises(ValueError, match="unknown FL algorithm 'fedprox'"):
        FLConfig(algorithm="fedprox")
    with pytest.raises(ValueError, match="fraction"):
        FLConfig(fraction=0.0)
