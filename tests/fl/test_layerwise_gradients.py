"""Per-sample gradients from one batched pass (fedleak.fl.layerwise_gradients): equal to torch.func's vmap and to
plain autograd, twice differentiable like them, and used only for models whose samples never meet."""
import pytest
import torch
import torch.nn as nn

from fedleak.fl.layerwise_gradients import layerwise_layers
from fedleak.fl.per_sample import SampleGradients
from fedleak.models import build_model


def _engines(model):
    names = [n for n, _ in model.named_parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # as in the attacker's copy: only the inputs are optimised
    fast = SampleGradients(model, names)
    slow = SampleGradients(model, names)
    slow._layers = None  # the vmap / plain-autograd path the engine takes for any other model
    return fast, slow


@pytest.mark.parametrize("batch", [1, 5])
def test_cnn_gradients_and_their_input_derivatives_match_vmap(batch):
    torch.manual_seed(0)
    fast, slow = _engines(build_model("cnn", (3, 32, 32), 10).train())
    assert fast._layers is not None
    x = torch.rand(batch, 3, 32, 32, requires_grad=True)
    y = torch.randint(0, 10, (batch,))
    weights = {n: torch.randn_like(p) for n, p in fast._weights.items()}
    outputs = []
    for engine in (fast, slow):
        grads = engine(x, y)
        (dx,) = torch.autograd.grad(sum((g * weights[n]).sum() for n, g in grads.items()), x)
        outputs.append((grads, dx))
    (fast_grads, fast_dx), (slow_grads, slow_dx) = outputs
    for name, g in slow_grads.items():
        assert fast_grads[name].shape == g.shape
        assert torch.allclose(fast_grads[name], g, rtol=1e-4, atol=1e-6 * float(g.detach().abs().max())), name
    assert torch.allclose(fast_dx, slow_dx, rtol=1e-4, atol=1e-5 * float(slow_dx.detach().abs().max()))


def test_soft_labels_and_a_linear_model_without_input_gradients():
    torch.manual_seed(1)
    fast, slow = _engines(nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4)))
    x = torch.randn(7, 3, 4)
    y = torch.softmax(torch.randn(7, 4), -1).requires_grad_(True)
    fast_grads, slow_grads = fast(x, y), slow(x, y)
    for name, g in slow_grads.items():
        assert torch.allclose(fast_grads[name], g, atol=1e-6), name
    hard = torch.randint(0, 4, (7,))
    assert not any(g.requires_grad for g in fast(x, hard).values())
    assert all(g.requires_grad for g in fast(x, y).values())


def test_models_whose_samples_may_meet_are_left_to_vmap():
    shared = nn.Linear(3, 3)
    assert layerwise_layers(nn.Sequential(shared, nn.ReLU(), shared), ["0.weight"]) is None
    assert layerwise_layers(nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True)), ["0.weight"]) is None
    assert layerwise_layers(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), ["0.weight"]) is None
    assert layerwise_layers(nn.Sequential(nn.Conv2d(3, 3, 3, padding_mode="circular")), ["0.weight"]) is None
    assert layerwise_layers(build_model("cnn", (3, 32, 32), 10, norm="batch"), ["classifier.weight"]) is None
    assert list(layerwise_layers(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), ["0.weight"])) == ["0"]


def _references(model, x, y):
    """Each sample's gradient as a batch of one, by torch.func's vmap(grad) and by a loop of plain autograd
    (create_graph): the references of the per-layer engine."""
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in model.named_parameters()]
    weights = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(w, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, {**w, **buffers}, (xi[None],)), yi[None])

    leaves = {n: w.clone().requires_grad_(True) for n, w in weights.items()}
    looped = [torch.autograd.grad(loss(leaves, xi, yi), list(leaves.values()), create_graph=True)
              for xi, yi in zip(x, y)]
    loop = {n: torch.stack([sample[k] for sample in looped]) for k, n in enumerate(names)}
    return vmap(grad(loss), in_dims=(None, 0, 0))(weights, x, y), loop


def _real_layers():
    torch.manual_seed(3)
    depthwise = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False),
                              nn.ReLU6(), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.GroupNorm(4, 8),
                              nn.Hardswish(), nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.Flatten(),
                              nn.LayerNorm(16 * 8 * 8), nn.Linear(16 * 8 * 8, 5))
    depthwise[7].eval()  # running statistics: each sample normalised on its own
    with torch.no_grad():
        depthwise[7].running_mean.uniform_(-1, 1)
        depthwise[7].running_var.uniform_(0.5, 2)
        for module in depthwise.modules():
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return {"resnet18-group": build_model("resnet18", (3, 16, 16), 5, norm="group", width=4).train(),
            "mobilenet-like": depthwise.train()}


@pytest.mark.parametrize("kind", ["resnet18-group", "mobilenet-like"])
def test_norms_depthwise_convolutions_and_residual_adds_match_vmap(kind):
    """Group, layer and batch norm (eval mode, and without running statistics: a sample alone is a batch of
    one), depthwise convolutions and the residual block: the per-layer engine applies and its gradients and
    their input derivatives equal torch.func's vmap(grad)."""
    model = _real_layers()[kind].double()  # double precision: a difference is a bug, not rounding
    if kind == "mobilenet-like":
        model[7].eval()
    fast, _ = _engines(model)
    assert fast._layers is not None and len(fast._layers) == len({n.rpartition(".")[0] for n in fast.names})
    x = torch.rand(3, 3, 16, 16, dtype=torch.double, requires_grad=True)
    y = torch.tensor([0, 3, 1])
    vmapped, looped = _references(model, x, y)
    grads = fast(x, y)
    scale = max(float(g.abs().max()) for g in looped.values())  # a bias before a norm has gradient ~0
    for name, g in vmapped.items():
        assert torch.allclose(grads[name], g, rtol=1e-9, atol=1e-12 * scale), name
    # the input derivatives against the loop: torch 2.13's vmap gets those of batch and layer norm weights
    # wrong (off by up to 5% against plain autograd; group norm's are right)
    weights = {n: torch.randn_like(g) for n, g in looped.items()}
    (dx_ref,) = torch.autograd.grad(sum((g * weights[n]).sum() for n, g in looped.items()), x)
    (dx,) = torch.autograd.grad(sum((g * weights[n]).sum() for n, g in grads.items()), x)
    assert torch.allclose(dx, dx_ref, rtol=1e-9, atol=1e-11 * float(dx_ref.abs().max()))


def test_batch_norm_that_updates_running_statistics_is_left_to_vmap():
    model = build_model("resnet18", (3, 16, 16), 5, norm="batch", width=4).train()
    assert layerwise_layers(model, ["classifier.weight"]) is None  # training-mode BN couples the batch
    assert layerwise_layers(model.eval(), ["classifier.weight", "stem.norm.weight"]) is not None


def test_same_padding_qualifies_only_when_asked_and_symmetric():
    """``padding="same"`` is symmetric zero padding for an odd kernel (the CVB's encoders); the inversion's lanes
    ask for it (``same=True``), the engine's other callers (DP-SGD) keep their vmap path for it."""
    odd = nn.Sequential(nn.Conv2d(2, 3, 5, padding="same"), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4))
    assert layerwise_layers(odd, ["0.weight"]) is None
    assert list(layerwise_layers(odd, ["0.weight", "0.bias"], same=True)) == ["0"]
    even = nn.Sequential(nn.Conv2d(2, 3, 4, padding="same"))
    assert layerwise_layers(even, ["0.weight"], same=True) is None  # asymmetric: one more zero on one side
    from fedleak.fl.layerwise_gradients import layerwise_gradients
    from fedleak.fl.training import sample_losses

    torch.manual_seed(3)
    fast, slow = _engines(odd)
    x = torch.rand(3, 2, 6, 6, requires_grad=True)
    y = torch.randint(0, 4, (3,))
    for lanes in (1, 3):  # one sample unfolds its input for the forward as well
        grads = layerwise_gradients(odd, layerwise_layers(odd, fast.names, same=True), fast.names,
                                    {**fast._weights, **fast._constants}, x[:lanes], y[:lanes],
                                    lambda o, t: sample_losses(odd, o, t), create_graph=True)
        expected = slow(x[:lanes], y[:lanes])
        for name, g in expected.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6 * float(g.detach().abs().max()))
        dx, = torch.autograd.grad(grads["0.weight"].pow(2).sum(), x)
        dx_slow, = torch.autograd.grad(expected["0.weight"].pow(2).sum(), x)
        torch.testing.assert_close(dx, dx_slow, rtol=1e-4, atol=1e-6 * float(dx_slow.abs().max()))


@pytest.mark.parametrize("groups", [1, 2])
def test_constant_weight_convolution_equals_autograds_to_the_third_derivative(groups):
    """The convolution the engine runs when its weights are constants (as the inversion's): its value and its
    first, second and third derivatives in the input are those of the plain convolution."""
    from fedleak.fl.layerwise_gradients import _conv

    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=groups).double().requires_grad_(False)
    x = torch.rand(2, 4, 7, 7, dtype=torch.double, requires_grad=True)
    assert torch.equal(_conv(conv, x), conv(x))
    torch.autograd.gradcheck(lambda t: _conv(conv, t), x)
    torch.autograd.gradgradcheck(lambda t: _conv(conv, t), x)
    cotangent = torch.rand(2, 6, 4, 4, dtype=torch.double, requires_grad=True)
    derivatives = []
    for forward in (lambda t: _conv(conv, t), conv):
        (dx,) = torch.autograd.grad(forward(x), x, cotangent, create_graph=True)
        (dc,) = torch.autograd.grad(dx.square().sum(), cotangent, create_graph=True)
        derivatives.append((dx, dc, torch.autograd.grad(dc.square().sum(), cotangent)[0]))
    for ours, theirs in zip(*derivatives):
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
