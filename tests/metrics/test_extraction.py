"""Active neurons, extraction-precision and extraction-recall (paper 002 §8.1) on constructed candidates."""
import pytest
import torch

from fedleak.metrics.extraction import DEFAULT_TOLERANCE, extraction_scores, match_extractions


def test_precision_recall_and_active_count_exact_rows_and_distinct_inputs():
    torch.manual_seed(0)
    truth = torch.rand(4, 1, 5, 5)
    candidates = torch.stack([
        truth[0], truth[0], truth[2],  # three exact rows, two distinct inputs
        0.5 * (truth[1] + truth[3]),  # an overlay
        truth[3] + 1e-2,  # close but not exact
    ])
    bias_grad = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0])
    scores = extraction_scores(candidates, bias_grad, truth)
    assert scores.active == pytest.approx(0.5)
    assert scores.precision == pytest.approx(3 / 10)
    assert scores.recall == pytest.approx(2 / 4)
    assert scores.recovered.tolist() == [True, False, True, False]
    assert scores.best[3].item() == 4  # the near miss is the closest candidate to input 3


def test_tolerance_is_relative_to_the_data_scale():
    truth = torch.full((2, 8), 100.0)
    truth[1] = 50.0
    scale = truth.norm(dim=1).mean()
    near = truth[0] + (0.5 * DEFAULT_TOLERANCE * scale / 8 ** 0.5)
    far = truth[0] + (2.0 * DEFAULT_TOLERANCE * scale / 8 ** 0.5)
    match = match_extractions(torch.stack([near, far]), truth)
    assert match.exact.tolist() == [True, False]
    assert match.sample.tolist() == [0, 0]


def test_non_finite_candidates_never_count():
    truth = torch.rand(2, 3)
    match = match_extractions(torch.tensor([[float("nan"), 0.0, 0.0], [float("inf"), 1.0, 1.0]]), truth)
    assert not match.exact.any()
    assert torch.isinf(match.error).all()


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="candidates have 4 features"):
        match_extractions(torch.zeros(2, 4), torch.zeros(3, 5))
