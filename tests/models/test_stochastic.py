"""The random-module protocol: overrides replace fresh draws (also under vmap), last_draw records the draw."""
import copy

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from fedleak.defenses import StochasticDropout, last_draws, overridden, stochastic_modules
from fedleak.defenses.bottleneck import Precode
from fedleak.registry import UnknownNameError


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), StochasticDropout(0.5), nn.ReLU(), Precode((8,), K=4), nn.Linear(8, 3))


def test_modules_listed_in_forward_order_and_draws_recorded():
    model = small_model().train()
    assert [name for name, _ in stochastic_modules(model)] == ["1", "3"]
    model(torch.randn(5, 6))
    draws = last_draws(model)
    assert draws["1"].shape == (5, 8) and set(draws["1"].unique().tolist()) <= {0.0, 1.0}
    assert draws["3"].shape == (5, 4)


def test_override_reproduces_the_recorded_forward_and_is_restored():
    model = small_model().train()
    x = torch.randn(5, 6)
    first = model(x)
    draws = last_draws(model)
    assert not torch.allclose(model(x), first)  # fresh randomness differs
    with overridden(model, draws):
        torch.testing.assert_close(model(x), first)
    assert all(m.override is None for _, m in stochastic_modules(model))


def test_override_errors_name_the_problem():
    model = small_model().train()
    with pytest.raises(UnknownNameError, match="random modules: 1, 3"):
        with overridden(model, {"nope": torch.ones(5, 8)}):
            pass
    with pytest.raises(ValueError, match=r"override of shape \(2, 8\) does not match .* \(5, 8\)"):
        with overridden(model, {"1": torch.ones(2, 8)}):
            model(torch.randn(5, 6))


def test_parameter_override_is_not_a_model_parameter_and_gets_gradients():
    model = small_model().train()
    names = {n for n, _ in model.named_parameters()}
    mask = nn.Parameter(torch.full((5, 8), 0.5))
    with overridden(model, {"1": mask}):
        model(torch.randn(5, 6)).sum().backward()
    assert {n for n, _ in model.named_parameters()} == names
    assert mask.grad is not None and mask.grad.abs().sum() > 0


def test_overridden_inside_vmap_over_independent_draws():
    model = small_model().train()
    params = dict(model.named_parameters())
    x = torch.randn(1, 6)
    masks = torch.bernoulli(torch.full((4, 1, 8), 0.5))
    eps = torch.randn(4, 1, 4)

    def run(mask, noise):
        with overridden(model, {"1": mask, "3": noise}):
            return functional_call(model, params, (x,))

    batched = vmap(run)(masks, eps)
    for i in range(4):
        with overridden(model, {"1": masks[i], "3": eps[i]}):
            torch.testing.assert_close(batched[i], model(x))


def test_copy_after_a_differentiable_forward():
    model = small_model().train()
    model(torch.randn(5, 6, requires_grad=True)).sum()
    clone = copy.deepcopy(model)  # the bottleneck's statistics (with a graph) are not copied
    assert clone[3].mu is None and clone[1].last_draw.shape == (5, 8)
