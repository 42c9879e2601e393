"""Which candidate is an exact extraction (paper 002 §8.1), on constructed candidates; the scores built from it are
tested with the scorer (tests/cases/test_scoring.py)."""
import pytest
import torch

from fedleak.metrics.extraction import DEFAULT_TOLERANCE, match_extractions


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


def _digits_like(count: int, seed: int) -> torch.Tensor:
    """Quantised 8x8 images: grey levels k / 255 in [0, 1]."""
    return torch.randint(0, 256, (count, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).float() / 255


def test_an_overlay_dominated_by_one_input_is_not_exact_on_quantised_data():
    # After training, an input the model fits has a tiny dL/dy: the overlay of two inputs then sits within the 1e-4
    # distance tolerance of the other (measured on digits: relative l2 2.7e-5 and 6.3e-5). Only the grid tells.
    truth = _digits_like(4, 0)
    weight = 8e-5  # the fitted input's share of the overlay
    overlay = (1 - weight) * truth[0] + weight * truth[1]
    single = truth[2] + 1e-7 * torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1))  # float round-off
    match = match_extractions(torch.stack([overlay, single]), truth)
    assert match.error[0] < DEFAULT_TOLERANCE  # the distance alone would call the overlay exact
    assert match.exact.tolist() == [False, True]
    assert match.sample.tolist() == [0, 2]


def test_the_grid_applies_only_to_quantised_batches():
    truth = _digits_like(4, 2)
    overlay = (1 - 8e-5) * truth[0] + 8e-5 * truth[1]
    real_valued = truth + 1e-3 * torch.rand(truth.shape, generator=torch.Generator().manual_seed(3))  # off the grid
    shifted = (1 - 8e-5) * real_valued[0] + 8e-5 * real_valued[1]
    assert match_extractions(overlay[None], truth, levels=None).exact.tolist() == [True]  # distance only
    assert match_extractions(shifted[None], real_valued).exact.tolist() == [True]
