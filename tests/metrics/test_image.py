"""Image reconstruction metrics against known values and the scikit-image reference SSIM."""
import math

import pytest
import torch
from skimage.metrics import structural_similarity

from fedleak.data import load_dataset
from fedleak.metrics import attack_success_rate, match_reconstructions, mse, psnr, ssim


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_dataset("bundled", split="test").inputs(slice(0, 8))  # real Fashion-MNIST, (8, 1, 28, 28)


def test_ssim_of_identical_images_is_one(images):
    torch.testing.assert_close(ssim(images, images), torch.ones(8))


def test_ssim_decreases_with_noise(images):
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator)
    scores = [ssim(images, (images + level * noise).clamp(0, 1)).mean().item() for level in (0.02, 0.1, 0.3, 1.0)]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert scores[0] > 0.9 and scores[-1] < 0.3


def test_ssim_matches_scikit_image_gaussian_ssim():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=generator)
    y = (x + 0.2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    reference = [structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False, data_range=1.0) for i in range(3)]
    torch.testing.assert_close(ssim(x, y), torch.tensor(reference, dtype=torch.float32), atol=1e-4, rtol=0)


def test_mse_and_psnr_of_a_known_offset(images):
    shifted = images + 0.1
    torch.testing.assert_close(mse(images, shifted), torch.full((8,), 0.01))
    torch.testing.assert_close(psnr(images, shifted), torch.full((8,), 20.0), atol=1e-4, rtol=0)
    assert math.isinf(psnr(images[:1], images[:1]).item())
    torch.testing.assert_close(psnr(2 * images, 2 * shifted, data_range=2.0), torch.full((8,), 20.0))


def test_attack_success_rate_counts_ssim_above_threshold():
    assert attack_success_rate(torch.tensor([0.9, 0.5, 0.51, 0.2])) == 0.5
    assert attack_success_rate(torch.tensor([0.9, 0.5, 0.51, 0.2]), threshold=0.1) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        attack_success_rate(torch.tensor([]))


@pytest.mark.parametrize("by", ["ssim", "mse"])
def test_matching_undoes_a_permutation(images, by):
    generator = torch.Generator().manual_seed(2)
    noisy = (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    perm = torch.randperm(8, generator=generator)
    matched, order = match_reconstructions(noisy[perm], images, by=by)
    torch.testing.assert_close(matched, noisy)
    assert torch.equal(perm[order], torch.arange(8))
    single, order = match_reconstructions(noisy[:1], images[:1], by=by)
    assert torch.equal(order, torch.tensor([0]))


def test_errors_name_the_problem(images):
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(images, images[:2])
    with pytest.raises(ValueError, match="smaller"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown criterion"):
        match_reconstructions(images, images, by="lpips")
