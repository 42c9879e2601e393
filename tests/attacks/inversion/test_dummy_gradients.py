"""The inversion's lane gradients (fedleak.attacks.inversion.dummy_gradients) behind random defense modules: with
every module's draw given per lane, the per-layer engine's gradients, and their derivatives in the dummy inputs and
in the draws (VBIA/DIA optimise both), equal torch.func's vmap over the lanes."""
import pytest
import torch

from fedleak.attacks.inversion.dummy_gradients import LaneGradients, attack_copy
from fedleak.defenses import apply_defenses, last_draws
from fedleak.fl.factored import materialised
from fedleak.models import build_model

CASES = {
    "cnn+cvb": ("cnn", (3, 16, 16), {"padding": 2}, "cvb"),
    "cnn+precode": ("cnn", (3, 16, 16), {"padding": 2}, "precode:K=16"),
    "cnn+dropout": ("cnn", (3, 16, 16), {"padding": 2}, "dropout"),
    "resnet+cvb": ("resnet18", (3, 16, 16), {"norm": "group", "width": 4}, "cvb"),
}


def _lanes(case: str, lanes: int, dtype=torch.float32):
    torch.manual_seed(0)
    name, shape, options, defenses = CASES[case]
    model = build_model(name, shape, 5, **options)
    model = attack_copy(apply_defenses(model, defenses, model_name=name, input_shape=shape)[0], "cpu").to(dtype)
    x = torch.rand(lanes, *shape, dtype=dtype, requires_grad=True)
    y = torch.randint(0, 5, (lanes,))
    with torch.no_grad():
        model(x)
    draws = {}
    for module_name, draw in last_draws(model).items():
        relaxed = torch.rand_like(draw) if "dropout" in module_name else torch.randn_like(draw)  # DIA's [0, 1] masks
        draws[module_name] = relaxed.unsqueeze(1).requires_grad_(True)
    return model, x, y, draws


@pytest.mark.parametrize("case,lanes,dtype", [("cnn+cvb", 3, torch.float32), ("cnn+cvb", 1, torch.float32),
                                              ("cnn+precode", 3, torch.float32), ("cnn+dropout", 3, torch.float32),
                                              ("resnet+cvb", 3, torch.float32), ("resnet+cvb", 3, torch.float64)])
def test_lane_gradients_behind_random_modules_match_vmap_with_their_derivatives(case, lanes, dtype):
    """Relative 1e-4 of each tensor's largest entry in float32 (the ResNet's rounding reaches 1e-5 of it), and
    1e-9 in float64, where the two paths' only difference is rounding."""
    tolerance = 1e-4 if dtype == torch.float32 else 1e-9
    model, x, y, draws = _lanes(case, lanes, dtype)
    names = [n for n, _ in model.named_parameters()]
    engine = LaneGradients(model, names)
    assert engine._layers is not None, case  # the per-layer engine applies
    fast = materialised(engine(x, y, draws))
    slow = engine.samples(x, y, draws)  # vmap over the lanes (plain autograd for one lane)
    weights = {n: torch.randn_like(g) for n, g in slow.items()}
    inputs = [x, *draws.values()]
    derivatives = []
    for grads in (fast, slow):
        scalar = sum((g * weights[n]).sum() for n, g in grads.items())
        derivatives.append(torch.autograd.grad(scalar, inputs))
    for name, g in slow.items():
        assert fast[name].shape == g.shape, name
        torch.testing.assert_close(fast[name], g, rtol=tolerance, atol=tolerance * float(g.detach().abs().max()),
                                   msg=name)
    for which, (d_fast, d_slow) in zip(["x", *draws], zip(*derivatives)):
        assert d_slow.abs().max() > 0, which  # the draws do reach the gradients
        torch.testing.assert_close(d_fast, d_slow, rtol=tolerance, atol=tolerance * float(d_slow.abs().max()),
                                   msg=which)
    assert all(m.last_draw is None and getattr(m, "mu", None) is None for m in engine.randoms.values())


def test_the_bottleneck_kl_is_in_the_lane_gradients():
    """The encoders' gradients carry the KL term: without it (beta = 0) they differ."""
    model, x, y, draws = _lanes("cnn+cvb", 2)
    names = ["cvb.mu_encoder.weight"]
    with_kl = LaneGradients(model, names)(x, y, draws)["cvb.mu_encoder.weight"]
    model.cvb.beta = 0.0
    without = LaneGradients(model, names)(x, y, draws)["cvb.mu_encoder.weight"]
    assert (with_kl - without).abs().max() > 1e-3 * with_kl.abs().max()


def test_fresh_draws_and_unknown_draws_are_left_to_vmap(monkeypatch):
    model, x, y, draws = _lanes("cnn+dropout", 2)
    engine = LaneGradients(model, [n for n, _ in model.named_parameters()])
    calls = []
    monkeypatch.setattr(engine, "samples", lambda *args: calls.append(args) or {})
    engine(x, y)  # no draws: every lane draws afresh (randomness="different" under vmap)
    engine(x, y, dict(list(draws.items())[:1]))  # only some modules' draws
    assert len(calls) == 2
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no random defense module named nope"):
        engine(x, y, {**draws, "nope": torch.zeros(2, 1)})


def test_a_one_dimensional_bottleneck_is_left_to_vmap_and_still_right():
    """A CVB on (C, L) features convolves with Conv1d, which the per-layer engine does not cover: vmap it is."""
    from fedleak.defenses.bottleneck import ConvBottleneck

    torch.manual_seed(4)
    model = attack_copy(torch.nn.Sequential(ConvBottleneck((4, 6), K=8, kernel_size=3), torch.nn.Flatten(),
                                            torch.nn.Linear(24, 3)), "cpu")
    engine = LaneGradients(model, [n for n, _ in model.named_parameters()])
    assert engine._layers is None
    x, y = torch.rand(2, 4, 6), torch.tensor([0, 2])
    draws = {"0": torch.randn(2, 1, 8, 6)}
    for i in range(2):
        alone = engine(x[i:i + 1], y[i:i + 1], {"0": draws["0"][i:i + 1]})
        for name, g in engine(x, y, draws).items():
            torch.testing.assert_close(g[i], alone[name][0], rtol=1e-5, atol=1e-7)
