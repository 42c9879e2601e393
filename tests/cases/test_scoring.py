"""The one scorer (paper 002 §8.1: active neurons A, extraction-precision P, extraction-recall R; fedleak's
near-exact leakage) on constructed candidates and on trap-weights extraction under DP noise (issue 12)."""
import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.attacks.base import Reconstruction
from fedleak.cases.batch import attack_batches
from fedleak.cases.scoring import point_scores, score
from fedleak.data import load_dataset
from fedleak.defenses.dp import DPSGD
from fedleak.metrics.extraction import NEAR_PSNR, near_key
from fedleak.models import build_model

KEY = near_key()


def _digits_like(count: int, seed: int) -> torch.Tensor:
    """Quantised 8x8 images: grey levels k / 255 in [0, 1]."""
    return torch.randint(0, 256, (count, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).float() / 255


def test_active_rows_precision_and_recall_count_rows_and_distinct_inputs():
    torch.manual_seed(0)
    truth = torch.rand(4, 1, 5, 5)
    candidates = torch.stack([
        truth[0], truth[0], truth[2],  # three exact rows, two distinct inputs
        0.5 * (truth[1] + truth[3]),  # an overlay
        truth[3] + 1e-2,  # close but not exact
    ])
    scores = score(Reconstruction(candidates, info={"num_rows": 10}), truth)
    assert scores["A"] == pytest.approx(5 / 10)  # one candidate per active row
    assert scores["P"] == pytest.approx(3 / 10)
    assert scores["R"] == pytest.approx(2 / 4)
    points = point_scores(Reconstruction(candidates), truth)
    assert points.recovered.tolist() == [True, False, True, False] and points.exact == 3
    assert points.best[3].item() == 4  # the near miss is the closest candidate to input 3


def test_no_candidates_score_zero_and_without_rows_no_apr():
    truth = torch.rand(3, 1, 8, 8)
    empty = score(Reconstruction(torch.zeros(0, 1, 8, 8), info={"num_rows": 5}), truth)
    assert (empty["A"], empty["P"], empty["R"], empty[KEY], empty["best_psnr"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert "A" not in score(Reconstruction(truth.clone()), truth)  # an inversion has no rows


def test_token_rows_count_exact_sequences():
    truth = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    rows = torch.tensor([[5, 6, 7, 0], [5, 6, 7, 0], [8, -1, 0, 0], [1, 2, 3, 5]])
    scores = score(Reconstruction(rows, declared=(rows >= 0).all(dim=1), info={"num_rows": 8}), truth)
    assert scores["A"] == pytest.approx(4 / 8) and scores["P"] == pytest.approx(2 / 8)
    assert scores["R"] == pytest.approx(1 / 3) == scores["recall"]


def test_an_overlay_dominated_by_one_input_is_not_exact_but_near():
    truth = _digits_like(4, 0)
    overlay = (1 - 8e-5) * truth[0] + 8e-5 * truth[1]
    single = truth[2] + 1e-7 * torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1))  # float round-off
    reconstruction = Reconstruction(torch.stack([overlay, single]), info={"num_rows": 2})
    points = point_scores(reconstruction, truth)
    assert points.recovered.tolist() == [False, False, True, False]
    assert score(reconstruction, truth)["P"] == pytest.approx(0.5)
    assert points.psnr[0] > 60  # still a near-exact leak of input 0


def test_a_close_candidate_counts_near_but_not_exact():
    torch.manual_seed(0)
    truth = torch.rand(3, 1, 12, 12)
    candidates = torch.stack([truth[0] + 1e-2, torch.rand(1, 12, 12), torch.full((1, 12, 12), float("nan"))])
    reconstruction = Reconstruction(candidates, info={"num_rows": 4})
    scores, points = score(reconstruction, truth), point_scores(reconstruction, truth)
    assert scores["R"] == 0.0
    assert points.psnr[0] == pytest.approx(40.0, abs=0.1)  # MSE 1e-4 on data in [0, 1]
    assert points.psnr[1:].max() < 15  # uniform noise against other uniform noise
    assert scores[KEY] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def trapped():
    data = load_dataset("bundled")
    x, y = data.inputs(slice(0, 50)), data.y[:50]
    torch.manual_seed(0)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, widths=(500, 16))
    attack = ATTACKS.build("trap_weights", scale_factor=0.8, seed=0)
    sent, secret = attack.prepare(model, AttackContext(data.info.input_shape))
    return attack, sent, secret, x, y


def _dp(trapped, sigma):
    attack, sent, secret, x, y = trapped
    (outcome,) = attack_batches(attack, sent, secret, [(x, y)],
                                gradient_fn=DPSGD(clip=1.0, sigma=sigma, generator=torch.Generator().manual_seed(0)))
    return outcome.scores, outcome.points()


def test_dp_noise_hides_exact_recall_but_not_the_images(trapped):
    clean, clean_points = _dp(trapped, 0.0)  # clipping alone (paper 002 Fig. 4a) leaves the exact extraction
    noisy, noisy_points = _dp(trapped, 1e-6)
    assert clean["R"] >= 0.3 and clean[KEY] == pytest.approx(clean["R"])
    assert noisy["R"] == 0.0
    assert noisy[KEY] >= 0.3  # the same images, visually unchanged
    assert float(noisy_points.psnr[clean_points.recovered].min()) >= NEAR_PSNR


def test_enough_dp_noise_leaves_nothing_recoverable(trapped):
    scores, points = _dp(trapped, 1e-2)
    assert scores["R"] == 0.0 and scores[KEY] == 0.0
    assert float(points.psnr.max()) < 20.0
