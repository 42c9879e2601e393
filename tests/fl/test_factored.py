"""Per-sample weight gradients as outer products and their factored forms (fedleak.fl.factored): the factors give
the dot product with a target and the squared norm of the gradient they stand for, with the same derivatives, and
the per-layer engine factors exactly the layers the cost rule names."""
import torch

from fedleak.fl.factored import LowRank, RankOne, factor_at, materialised, outer_sum
from fedleak.fl.layerwise_gradients import layerwise_gradients
from fedleak.fl.per_sample import SampleGradients
from fedleak.fl.training import sample_losses
from fedleak.models import build_model


def test_outer_product_is_twice_differentiable():
    g = torch.randn(3, 4, 1, dtype=torch.double, requires_grad=True)
    a = torch.randn(3, 5, 1, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(outer_sum, (g, a))
    assert torch.autograd.gradgradcheck(outer_sum, (g, a))


def test_low_rank_terms_and_their_derivatives_equal_the_materialised_gradients():
    torch.manual_seed(0)
    g = torch.randn(3, 6, 4, dtype=torch.double, requires_grad=True)
    a = torch.randn(3, 10, 4, dtype=torch.double, requires_grad=True)
    rows = torch.randn(3, 60, dtype=torch.double)
    factored = LowRank(g, a, torch.Size((6, 10)))
    plain = torch.einsum("bop,bip->boi", g, a)
    assert torch.allclose(factored.materialise(), plain)
    dot, square = factored.dot_and_square(rows)
    flat = plain.flatten(1)
    assert torch.allclose(dot, (flat * rows).sum(1))
    assert torch.allclose(square, flat.pow(2).sum(1))
    weights = torch.tensor([0.3, -1.2, 2.0], dtype=torch.double)
    derivatives = torch.autograd.grad((weights * (dot + square)).sum(), (g, a))
    expected = torch.autograd.grad((weights * ((flat * rows).sum(1) + flat.pow(2).sum(1))).sum(), (g, a))
    for got, want in zip(derivatives, expected):
        assert torch.allclose(got, want)


def test_the_cost_rule_factors_deep_stages_and_never_the_small_cnn():
    assert factor_at(512, 512 * 9, 16)  # a ResNet-18's last stage at 32 x 32 inputs
    assert not factor_at(64, 64 * 9, 32 * 32)  # its first stage
    assert not factor_at(32, 16 * 25, 25) and not factor_at(16, 3 * 25, 196)  # the cnn's convolutions


def _factored_and_plain(model, x, y):
    """The per-layer engine's factored gradients of ``model`` on ``(x, y)`` and the plain per-sample ones."""
    names = [n for n, _ in model.named_parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # as in the attacker's copy: only the inputs are optimised
    engine = SampleGradients(model, names)
    factored = layerwise_gradients(model, engine._layers, names, {**engine._weights, **engine._constants}, x, y,
                                   lambda o, t: sample_losses(model, o, t), create_graph=True, factored=True)
    return factored, engine(x, y)


def _assert_distance_terms_match(factored, plain, names, x):
    """Multiplied out, the factors equal the plain gradients; their dot product with a target and squared norm, and
    the input derivatives of both, equal those of the plain gradients."""
    for name, g in materialised(factored).items():
        assert torch.allclose(g, plain[name], rtol=1e-4, atol=1e-6 * float(plain[name].detach().abs().max())), name
    for name in sorted(names):
        rows = torch.randn(len(x), plain[name][0].numel())
        dot, square = factored[name].dot_and_square(rows)
        flat = plain[name].flatten(1)
        assert torch.allclose(dot, (flat * rows).sum(1), rtol=1e-4, atol=1e-5)
        assert torch.allclose(square, flat.pow(2).sum(1), rtol=1e-4)
        (dx_fast,) = torch.autograd.grad((dot + square).sum(), x, retain_graph=True)
        (dx_plain,) = torch.autograd.grad(((flat * rows).sum(1) + flat.pow(2).sum(1)).sum(), x, retain_graph=True)
        assert torch.allclose(dx_fast, dx_plain, rtol=1e-3, atol=1e-5 * float(dx_plain.detach().abs().max())), name


def test_weights_applied_once_per_sample_come_back_rank_one():
    """The cnn's last conv (one output position) and its classifier: RankOne factors, nothing LowRank."""
    torch.manual_seed(2)
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    factored, plain = _factored_and_plain(build_model("cnn", (3, 32, 32), 10).train(), x, torch.randint(0, 10, (4,)))
    rank_one = {n for n, g in factored.items() if isinstance(g, RankOne)}
    assert rank_one == {"block3.conv.weight", "classifier.weight"}
    assert not any(isinstance(g, LowRank) for g in factored.values())
    _assert_distance_terms_match(factored, plain, rank_one, x)


def test_the_engine_factors_a_resnets_last_stage_and_its_distance_terms_match():
    torch.manual_seed(4)
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    model = build_model("resnet18", (3, 16, 16), 5, norm="group", width=4).train()
    factored, plain = _factored_and_plain(model, x, torch.randint(0, 5, (3,)))
    low_rank = {n for n, g in factored.items() if isinstance(g, LowRank)}
    assert low_rank and all(n.startswith("layer4.") for n in low_rank), low_rank
    assert {n for n, g in factored.items() if isinstance(g, RankOne)} == {"classifier.weight"}
    _assert_distance_terms_match(factored, plain, low_rank, x)
