"""The parts of the inversion attack: distances, TV, the batched loop, the vmapped dummy gradients, errors."""
from __future__ import annotations

import pytest
import torch

from fedleak.attacks.base import Knowledge, Observed
from fedleak.attacks import ATTACKS
from fedleak.attacks.inversion import InversionConfig, invert
from fedleak.attacks.inversion.distances import DISTANCES
from fedleak.attacks.inversion.dummy_gradients import attack_copy
from fedleak.attacks.inversion.gradient_models import build_gradient_model
from fedleak.attacks.inversion.loop import optimise
from fedleak.attacks.inversion.presets import PRESETS
from fedleak.attacks.inversion.regularizers import total_variation
from fedleak.cases.victims import victim_case
from fedleak.fl.per_sample import SampleGradients
from fedleak.registry import UnknownNameError


def _grads(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(3, 4, 5, generator=g), "b": torch.randn(3, 7, generator=g)}


def test_distances_are_zero_on_equal_gradients_and_cosines_ignore_scale():
    g, h = _grads(0), _grads(1)
    scaled = {k: 5 * v for k, v in g.items()}
    for name in DISTANCES.names():
        dist = lambda g, h, names, name=name: DISTANCES.get(name)(h, names)(g)  # noqa: E731
        assert dist(g, g, ["a", "b"]).abs().max() < 1e-6
        assert (dist(g, h, ["a", "b"]) > 0.1).all()
    assert torch.allclose(DISTANCES.get("cosine")(h, ["a", "b"])(scaled), DISTANCES.get("cosine")(h, ["a", "b"])(g))
    flat = lambda d: torch.cat([d["a"].flatten(1), d["b"]], 1)  # noqa: E731
    expected = 1 - torch.nn.functional.cosine_similarity(flat(g), flat(h), dim=1)
    assert torch.allclose(DISTANCES.get("cosine")(h, ["a", "b"])(g), expected, atol=1e-6)
    assert torch.allclose(DISTANCES.get("l2")(h, ["a", "b"])(g), (flat(g) - flat(h)).pow(2).sum(1))
    only_a = DISTANCES.get("layer_cosine")(h, ["a"])(g)
    assert torch.allclose(only_a, 1 - torch.nn.functional.cosine_similarity(g["a"].flatten(1), h["a"].flatten(1)))


def test_cosine_distances_are_twice_differentiable():
    target = {k: v.double() for k, v in _grads(1).items()}
    dummy = [v.double().requires_grad_(True) for v in _grads(0).values()]
    for name in ("cosine", "layer_cosine"):
        distance = DISTANCES.get(name)(target, ["a", "b"])
        call = lambda a, b: distance({"a": a, "b": b})  # noqa: E731
        assert torch.autograd.gradcheck(call, dummy) and torch.autograd.gradgradcheck(call, dummy), name


def test_total_variation_is_zero_for_flat_images_and_per_image():
    x = torch.zeros(2, 1, 8, 8)
    x[1, :, :, 4:] = 1.0
    tv = total_variation(x)
    assert tv[0] == 0 and tv[1] > 0


def test_loop_keeps_lanes_independent_with_per_lane_stopping_and_decay():
    """Lane l minimises |x - c_l|^2 with an easy or hopeless threshold: each lane converges to its own target
    and stops on its own; a lane that cannot improve decays its learning rate."""
    targets = torch.tensor([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])
    config = InversionConfig(lr=0.1, max_iterations=3000, plateau=50, patience=400, loss_threshold=1e-4)

    def objective(state):
        return (state["x"] - targets).pow(2).sum(1) * torch.tensor([1.0, 1.0, 0.0]) + torch.tensor([0, 0, 1.0])

    state = {"x": torch.zeros(3, 2)}
    outcome = optimise(objective, state, lambda s: None, config)
    assert torch.allclose(outcome.best["x"][:2], targets[:2], atol=2e-2)
    assert (outcome.loss[:2] < 1e-3).all()
    assert (outcome.iterations[:2] < 3000).all() and outcome.iterations[2] == 400  # patience stops lane 2
    assert not outcome.best["x"].requires_grad


def test_vmapped_dummy_gradients_with_true_draws_equal_the_clients_gradients(cnn, victims):
    """The premise of WIIG: with the client's own Dropout masks and bottleneck noise, the attacker's batched
    (vmap) dummy gradient of the true images equals what each client sent."""
    images, labels = victims
    case = victim_case(cnn, "cnn", "dropout,cvb", images, labels)
    model = attack_copy(case.model, "cpu")
    names = list(case.observed.updates)
    grads = SampleGradients(model, names)(images, labels, dict(case.knowledge.true_draws))
    for name in names:
        assert torch.allclose(grads[name], case.observed.updates[name], atol=1e-5, rtol=1e-4), name


def test_attacks_are_registered_and_bad_inputs_fail_clearly(cnn, victims):
    images, labels = victims
    for name in ("dlg", "idlg", "ig", "wiig", "dia", "dpia", "gpia", "vbia", "pig", "cdia"):
        assert ATTACKS.build(name).config is PRESETS[name]
    case = victim_case(cnn, "cnn", "", images[:1], labels[:1])
    quick = PRESETS["ig"].with_(max_iterations=2)
    with pytest.raises(ValueError, match="same number of victims"):  # not stacked over victims
        invert(quick, case.observed, case.knowledge, gradients={n: g[0] for n, g in case.observed.updates.items()})
    with pytest.raises(UnknownNameError, match="valid attacks"):
        invert("no-such-attack", case.observed, case.knowledge)
    with pytest.raises(ValueError, match="per-victim shape"):
        bad = {n: g.unsqueeze(1) for n, g in case.observed.updates.items()}  # an extra batch dimension
        invert(quick, case.observed, case.knowledge, gradients=bad)
    with pytest.raises(ValueError, match="does not have"):
        invert(quick, Observed({"nope": torch.zeros(1, 3)}, "gradient", (0,), (1,), (case.model,)), case.knowledge)
    with pytest.raises(ValueError, match="true draw"):
        dropout_case = victim_case(cnn, "cnn", "dropout", images[:1], labels[:1])
        invert(PRESETS["wiig"].with_(max_iterations=2), dropout_case.observed, Knowledge(input_shape=(1, 32, 32)))
    with pytest.raises(ValueError, match="dp_clip"):
        invert(PRESETS["dpia"].with_(max_iterations=2), case.observed, case.knowledge)
    with pytest.raises(ValueError, match="lr_decay"):
        InversionConfig(lr_decay=2.0)


def test_wiig_gradient_model_reproduces_dp_noise_and_pruning_exactly(cnn, victims):
    """WIIG's model of DP-SGD (clip + the client's noise) and of pruning (the received zero pattern), applied to
    the true images' gradients, gives back exactly what each client sent."""
    images, labels = victims
    case = victim_case(cnn, "cnn", "dropout,dp:sigma=1e-3,prune:p=0.5", images, labels)
    model = attack_copy(case.model, "cpu")
    received = dict(case.observed.updates)
    lanes = torch.arange(len(images))
    gm = build_gradient_model(PRESETS["wiig"], model, received, case.knowledge, lanes, torch.Generator())
    shared = gm.shared(SampleGradients(model, list(received))(images, labels, gm.draws({})), {})
    for name, sent in received.items():
        assert torch.allclose(shared[name], sent, atol=1e-5), name


def test_lbfgs_loop_converges_all_lanes():
    targets = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    config = InversionConfig(optimizer="lbfgs", lr=1.0, max_iterations=20, loss_threshold=1e-10)
    outcome = optimise(lambda s: (s["x"] - targets).pow(2).sum(1), {"x": torch.zeros(2, 2)}, lambda s: None, config)
    assert torch.allclose(outcome.best["x"], targets, atol=1e-4)


def test_restarts_keep_the_lowest_loss_per_victim(cnn, victims):
    images, labels = victims
    case = victim_case(cnn, "cnn", "", images[:2], labels[:2])
    short = PRESETS["ig"].with_(lr=0.1, max_iterations=20)
    one = invert(short, case.observed, case.knowledge, seed=3)
    three = invert(short.with_(restarts=3), case.observed, case.knowledge, seed=3)
    # restart 0 starts where the single run starts, so the best of three is never (noticeably) worse
    assert (three.meta['loss'] <= one.meta['loss'] + 1e-4).all(), (three.meta['loss'], one.meta['loss'])
    assert three.inputs.shape == one.inputs.shape == images[:2].shape


def test_pig_leaves_out_the_bottleneck_decoder_and_every_later_layer(cnn, victims):
    images, labels = victims
    case = victim_case(cnn, "cnn", "cvb", images[:1], labels[:1])
    model = attack_copy(case.model, "cpu")
    gm = build_gradient_model(PRESETS["pig"], model, dict(case.observed.updates), case.knowledge,
                              torch.zeros(1, dtype=torch.long), torch.Generator())
    assert gm.names == ["block1.conv.weight", "block1.conv.bias", "cvb.mu_encoder.weight", "cvb.std_encoder.weight"]
