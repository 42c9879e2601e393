"""Near-exact leakage (issue 12): where exact extraction-recall is 0 because of DP noise or the float32 round-off
of a FedAvg delta, yet the trap-weights candidates still show the batch, and where nothing is recoverable."""
import pytest
import torch

from fedleak.attacks.analytic import extract_at_layer
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.cases import Audit, ThreatModel
from fedleak.data import load_dataset
from fedleak.defenses.dp import DPSGD
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.extraction import NEAR_PSNR, extraction_scores, near_key
from fedleak.models import build_model

KEY = near_key()


def test_the_key_names_the_tolerance():
    assert KEY == "near_recall_psnr30" and near_key(25.5) == "near_recall_psnr25.5" and NEAR_PSNR == 30.0


def test_a_close_candidate_counts_near_but_not_exact():
    torch.manual_seed(0)
    truth = torch.rand(3, 1, 12, 12)
    candidates = torch.stack([truth[0] + 1e-2, torch.rand(1, 12, 12), torch.full((1, 12, 12), float("nan"))])
    scores = extraction_scores(candidates, torch.ones(4), truth)
    assert scores.recall == 0.0
    assert scores.best_psnr[0] == pytest.approx(40.0, abs=0.1)  # MSE 1e-4 on data in [0, 1]
    assert scores.best_psnr[1:].max() < 15  # uniform noise against other uniform noise
    assert scores.near_recall == pytest.approx(1 / 3)
    assert scores.as_dict()[KEY] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def trapped():
    data = load_dataset("bundled")
    x, y = data.inputs(slice(0, 50)), data.y[:50]
    torch.manual_seed(0)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, widths=(500, 16))
    model, secret = trap_weights(model, TrapWeightsConfig(data.info.input_shape, scale_factor=0.8, seed=0))
    return model, secret, x, y


def _dp_scores(trapped, sigma):
    model, secret, x, y = trapped
    update = DPSGD(clip=1.0, sigma=sigma, generator=torch.Generator().manual_seed(0))(model, x, y)
    reconstruction = extract_at_layer(update, secret)
    return extraction_scores(reconstruction.inputs, update[f"{secret.layer}.bias"], x)


def test_dp_noise_hides_exact_recall_but_not_the_images(trapped):
    clean = _dp_scores(trapped, 0.0)  # clipping alone (paper 002 Fig. 4a) leaves the exact extraction
    noisy = _dp_scores(trapped, 1e-6)
    assert clean.recall >= 0.3 and clean.near_recall == pytest.approx(clean.recall)
    assert noisy.recall == 0.0
    assert noisy.near_recall >= 0.3  # the same images, visually unchanged
    assert float(noisy.best_psnr[clean.recovered].min()) >= NEAR_PSNR


def test_enough_dp_noise_leaves_nothing_recoverable(trapped):
    scores = _dp_scores(trapped, 1e-2)
    assert scores.recall == 0.0 and scores.near_recall == 0.0
    assert float(scores.best_psnr.max()) < 20.0


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
