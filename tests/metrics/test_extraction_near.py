"""Near-exact leakage (issue 12): where exact extraction-recall is 0 because of DP noise or the float32 round-off
of a FedAvg delta, yet the trap-weights candidates still show the batch (DP noise: tests/cases/test_scoring.py)."""

from fedleak.cases import Audit, ThreatModel
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.extraction import NEAR_PSNR, near_key

KEY = near_key()


def test_the_key_names_the_tolerance():
    assert KEY == "near_recall_psnr30" and near_key(25.5) == "near_recall_psnr25.5" and NEAR_PSNR == 30.0


def test_a_fedavg_delta_of_one_small_sgd_step_leaks_near_exactly_through_an_audit():
    spec = FederationSpec(dataset="bundled", model="fcnn", model_options={"widths": (500, 16)})
    config = FLConfig(algorithm="fedavg", num_clients=10, rounds=1, fraction=0.1, batch_size=50, local_steps=1,
                      optimizer="sgd", lr=0.01, seed=0)
    audit = Audit("trap_weights", ThreatModel(server="malicious", protocol="fedavg"), scale_factor=0.8, seed=0)
    build_federation(spec, config, audit=audit, progress=False).run()
    (record,) = audit.records
    assert record.scores["true_points"] == 50
    assert record.scores["R"] == 0.0 and record.scores["recall"] == 0.0  # float32 w - (w - lr g) loses the digits
    assert record.scores[KEY] >= 0.25
    assert record.scores["best_psnr"] > 20.0
