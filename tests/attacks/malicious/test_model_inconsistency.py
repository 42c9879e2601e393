"""Model inconsistency (Pasquini et al., CCS 2022): trap weights read through secure aggregation as from one client."""
import pytest
import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.malicious.model_inconsistency import silenced
from fedleak.cases import Audit, ThreatModel
from fedleak.fl import FederationSpec, FLConfig, batch_gradients, build_federation
from fedleak.models import build_model

SPEC = FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (500, 16)})


def run(audit, clients=10):
    config = FLConfig(algorithm="fedsgd", num_clients=clients, rounds=1, batch_size=20, seed=0)
    build_federation(SPEC, config, audit=audit, progress=False).run()
    return audit.records


def test_trap_weights_through_secure_aggregation_of_ten_clients_recall_the_single_clients_data():
    alone = run(Audit("trap_weights", ThreatModel(server="malicious", victims=(3,)), scale_factor=0.8))
    inconsistent = run(Audit("model_inconsistency", ThreatModel(server="malicious", observes="secure_aggregate"),
                             target=3, inner="trap_weights", inner_options={"scale_factor": 0.8}))
    (single,), (aggregate,) = alone, inconsistent
    assert single.source == 3 and aggregate.source == -1 and aggregate.clients == tuple(range(10))
    target_images = single.truth[0]
    assert torch.equal(aggregate.truth[0][60:80], target_images)  # client 3's batch inside the 200 true images
    assert single.scores["recall"] > 0.25
    # every image the attack extracts from the aggregate is one of the target's, and exactly the same ones
    leaked = [i - 60 for i in aggregate.scores["leaked_indices"]]
    assert leaked == single.scores["leaked_indices"]
    assert aggregate.scores["declared"] == single.scores["declared"]


def test_plain_trap_weights_through_the_same_aggregate_recall_less_of_the_target():
    plain = run(Audit("trap_weights", ThreatModel(server="malicious", observes="secure_aggregate"), scale_factor=0.8))
    alone = run(Audit("trap_weights", ThreatModel(server="malicious", victims=(3,)), scale_factor=0.8))
    target_leaked = [i for i in plain[0].scores["leaked_indices"] if 60 <= i < 80]
    assert len(target_leaked) < alone[0].scores["leaked"]


def test_a_silenced_model_sends_a_zero_update_but_for_the_output_bias():
    model = build_model("fcnn", (1, 28, 28), 10, widths=(64, 16))
    silent = silenced(model, (1, 28, 28), 10)
    update = batch_gradients(silent, torch.rand(8, 1, 28, 28), torch.arange(8))
    assert all(float(g.abs().max()) == 0 for name, g in update.items() if name != "classifier.bias")
    assert float(update["classifier.bias"].abs().max()) > 0
    honest = batch_gradients(model, torch.rand(8, 1, 28, 28), torch.arange(8))
    assert float(honest["fc1.linear.weight"].abs().max()) > 0


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="target client id"):
        ATTACKS.build("model_inconsistency", target=-1)
    with pytest.raises(ValueError, match="attack 'trap_weights' has no option rate"):
        ATTACKS.build("model_inconsistency", target=0, inner_options={"rate": 1})
    audit = Audit("model_inconsistency", ThreatModel(server="malicious", victims=(1,)), target=0)
    with pytest.raises(ValueError, match="targets client 0, which is not among"):
        run(audit, clients=2)
