"""DP-SGD: per-sample clipping and noise change the shared gradient as specified; accounting via Opacus."""
import math

import pytest
import torch

from fedleak.defenses import (DPAccountant, apply_defenses, dp_epsilon, dp_gradient_fn, last_draws, overridden,
                              privatize)
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

SHAPE = (1, 16, 16)


def cnn(defenses: str = ""):
    torch.manual_seed(0)
    model = build_model("cnn", SHAPE, 10, padding=2)
    return apply_defenses(model, defenses, model_name="cnn", input_shape=SHAPE)[0].train()


def batch(n: int = 6):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, *SHAPE, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def flat(grads: dict) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


def test_without_clipping_or_noise_it_is_the_batch_gradient():
    model, (x, y) = cnn(), batch()
    dp = dp_gradient_fn(clip=1e6, sigma=0.0)
    torch.testing.assert_close(flat(dp(model, x, y)), flat(batch_gradients(model, x, y)), rtol=1e-4, atol=1e-6)


def test_per_sample_gradients_use_the_recorded_random_draws():
    model, (x, y) = cnn("dropout,cvb"), batch()
    dp = dp_gradient_fn(clip=1e6, sigma=0.0)
    grads = dp(model, x, y)
    draws = last_draws(model)
    assert set(draws) == {"block1.dropout_relu", "cvb", "block2.dropout_relu", "block3.dropout_relu"}
    with overridden(model, draws):
        reference = batch_gradients(model, x, y)
    torch.testing.assert_close(flat(grads), flat(reference), rtol=1e-4, atol=1e-6)


def test_clipping_bounds_each_sample_norm():
    model, (x, y) = cnn(), batch()
    dp = dp_gradient_fn(clip=0.05, sigma=0.0)
    per_sample = dp.per_sample_gradients(model, x, y)
    raw_norms = flat({n: g.flatten(1) for n, g in per_sample.items()}).new_tensor(
        [flat({n: g[i] for n, g in per_sample.items()}).norm() for i in range(len(x))])
    assert (raw_norms > 0.05).all()  # the threshold binds for every sample here
    for i in range(len(x)):
        clipped = privatize({n: g[i : i + 1] for n, g in per_sample.items()}, clip=0.05)
        assert flat(clipped).norm() == pytest.approx(0.05, rel=1e-4)
    # the DP gradient is the mean of the clipped samples: its norm is at most tau
    assert flat(dp(model, x, y)).norm() <= 0.05 * (1 + 1e-5)


def test_noise_really_changes_the_shared_gradient():
    model, (x, y) = cnn(), batch()
    clean = flat(dp_gradient_fn(clip=20.0, sigma=0.0)(model, x, y))
    dp = dp_gradient_fn(clip=20.0, sigma=1e-3, generator=torch.Generator().manual_seed(3))
    noisy = flat(dp(model, x, y))
    difference = noisy - clean
    expected_std = 1e-3 * 20.0 / len(x)  # N(0, (sigma tau)^2) on the sum, divided by B
    assert difference.std().item() == pytest.approx(expected_std, rel=0.05)  # ~30k entries
    torch.testing.assert_close(difference, flat(dp.last_noise) / len(x), rtol=1e-3, atol=1e-7)
    assert (noisy - flat(batch_gradients(model, x, y))).abs().max() > 5 * expected_std / 10


def test_batchnorm_is_refused():
    model = build_model("resnet18", (3, 16, 16), 10, norm="batch", width=4)
    with pytest.raises(ValueError, match="BatchNorm.*GroupNorm"):
        apply_defenses(model, "dp", model_name="resnet18", input_shape=(3, 16, 16))


def test_epsilon_finite_and_decreasing_in_sigma():
    epsilons = [dp_epsilon(sigma, sample_rate=64 / 5400, steps=300 * 85, delta=1e-5)
                for sigma in (1e-4, 1e-3, 0.5, 1.0, 2.0)]
    assert all(math.isfinite(e) and e > 0 for e in epsilons)
    assert all(a > b for a, b in zip(epsilons, epsilons[1:]))


def test_accountant_history_and_errors():
    accountant = DPAccountant()
    assert accountant.epsilon(1e-5) == 0.0
    accountant.step(1.0, 0.01, steps=10)
    one = accountant.epsilon(1e-5)
    accountant.step(1.0, 0.01, steps=10)
    assert accountant.history == [(1.0, 0.01, 20)] and accountant.epsilon(1e-5) > one
    with pytest.raises(ValueError, match="noise multiplier"):
        accountant.step(0.0, 0.01)
    with pytest.raises(ValueError, match="delta"):
        accountant.epsilon(0.0)
    with pytest.raises(ValueError, match="clipping threshold"):
        dp_gradient_fn(clip=0.0)


def test_seeded_noise_is_reproducible():
    model, (x, y) = cnn(), batch()
    grads = []
    for _ in range(2):
        _, gradient_fn, _ = apply_defenses(model, "dp:sigma=1e-2:seed=5", model_name="cnn", input_shape=SHAPE)
        grads.append(flat(gradient_fn(model, x, y)))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("sigma", [math.inf, math.nan, -1.0])
def test_epsilon_of_a_non_finite_sigma_is_refused_at_once(sigma):
    with pytest.raises(ValueError, match="noise multiplier must be a finite number > 0"):
        dp_epsilon(sigma, sample_rate=0.01, steps=10)
    with pytest.raises(ValueError, match="sample_rate"):
        dp_epsilon(1.0, sample_rate=math.nan, steps=10)
    with pytest.raises(ValueError, match="DP noise multiplier sigma"):
        dp_gradient_fn(sigma=sigma)
