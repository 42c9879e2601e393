"""The one training loss and the one per-sample-gradient engine: per-sample losses average to the batch loss
(KL term included), per-sample gradients equal each sample's gradient alone, sequence outputs work."""
import pytest
import torch
import torch.nn as nn

from fedleak.defenses import apply_defenses, last_draws, overridden
from fedleak.fl.per_sample import SampleGradients, batch_sample_gradients, couples_samples, per_sample_gradients
from fedleak.fl.training import batch_gradients, sample_losses, task_loss
from fedleak.models import build_model


class TinyLanguageModel(nn.Module):
    """Embedding + linear next-token head: (B, L) tokens -> (B, L, V) logits."""

    def __init__(self, vocabulary: int = 11, width: int = 6):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.head = nn.Linear(width, vocabulary)

    def forward(self, tokens):
        return self.head(self.embed(tokens))


def _looped(model, x, y):
    rows = [batch_gradients(model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    return {n: torch.stack([r[n] for r in rows]) for n in rows[0]}


def test_language_model_loss_and_per_sample_gradients():
    torch.manual_seed(0)
    model = TinyLanguageModel()
    tokens = torch.randint(0, 11, (4, 5))
    x, y = tokens, tokens.roll(-1, dims=1)
    outputs = model(x)
    loss = task_loss(model, outputs, y)
    manual = -outputs.log_softmax(-1).gather(-1, y.unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, manual)
    torch.testing.assert_close(sample_losses(model, outputs, y).mean(), loss)
    grads = per_sample_gradients(model, x, y)
    expected = _looped(model, x, y)
    for name in expected:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-4, atol=1e-6)
    assert grads["head.weight"][0].abs().sum() > 0


def test_per_sample_loss_includes_the_bottleneck_kl_and_gradients_match_single_samples():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 16, 16), 10, padding=2)
    model = apply_defenses(model, "cvb", model_name="cnn", input_shape=(1, 16, 16))[0].train()
    x, y = torch.rand(3, 1, 16, 16), torch.tensor([1, 4, 7])
    outputs = model(x)
    per_sample = sample_losses(model, outputs, y)
    torch.testing.assert_close(per_sample.mean(), task_loss(model, outputs, y))
    ce = nn.functional.cross_entropy(outputs, y, reduction="none")
    assert (per_sample - ce).abs().min() > 0  # the KL share is there
    draws = last_draws(model)
    engine = SampleGradients(model)
    grads = engine(x, y, {n: d.unsqueeze(1) for n, d in draws.items()})
    for i in range(len(x)):
        with overridden(model, {n: d[i : i + 1] for n, d in draws.items()}):
            alone = batch_gradients(model, x[i : i + 1], y[i : i + 1])
        for name, g in alone.items():
            torch.testing.assert_close(grads[name][i], g, rtol=1e-4, atol=1e-6)
    single = engine(x[:1], y[:1], {n: d[:1].unsqueeze(1) for n, d in draws.items()})  # the path without vmap
    for name, g in single.items():
        torch.testing.assert_close(g[0], grads[name][0], rtol=1e-4, atol=1e-6)


def test_bad_shapes_and_names_fail_clearly():
    model = TinyLanguageModel()
    with pytest.raises(ValueError, match=r"outputs of shape \(2, 3, 11\) against labels of shape \(2,\)"):
        task_loss(model, torch.zeros(2, 3, 11), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="no parameters"):
        SampleGradients(model, ["head.nope"])
    with pytest.raises(ValueError, match="no random defense module named mask"):
        SampleGradients(model)(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long),
                               {"mask": torch.zeros(2, 1)})


def _jacobian_loop(model, x, y, names):
    """Ground truth for batch_sample_gradients: one backward pass per sample's loss term of one batch forward."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    losses = sample_losses(model, model(x), y)
    rows = [torch.autograd.grad(losses[i], [params[n] for n in names], retain_graph=True) for i in range(len(x))]
    model.load_state_dict(state)  # the forward moved the running statistics
    return {n: torch.stack([row[k] for row in rows]) for k, n in enumerate(names)}


class DepthwiseBN(nn.Module):
    """Convolution with bias, batch norm, depthwise convolution, an in-place residual add, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16),
                                  nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x):
        x = self.stem(x)
        out = self.depthwise(x)
        out += x
        return self.head(out.relu())


@pytest.mark.parametrize("make", [lambda: build_model("resnet18", (3, 16, 16), 10, norm="batch", width=2),
                                  DepthwiseBN, lambda: build_model("cnn", (3, 16, 16), 10, padding=2)],
                         ids=["resnet18-batchnorm", "depthwise-batchnorm", "cnn-no-batchnorm"])
def test_batch_sample_gradients_match_one_backward_per_sample(make):
    """Exact against the loop (in double precision: no rounding), every parameter (batch-norm affine ones
    included), model state untouched."""
    torch.manual_seed(0)
    model = make().train().double()
    x, y = torch.rand(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 5, (6,))
    names = [n for n, _ in model.named_parameters()]
    expected = _jacobian_loop(model, x, y, names)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    got = batch_sample_gradients(model, x, y, names, chunk_size=4)
    for name in names:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-10)
    norms = batch_sample_gradients(model, x, y, names[:3], norms=True)
    for name in names[:3]:
        torch.testing.assert_close(norms[name], expected[name].flatten(1).norm(dim=1), rtol=1e-9, atol=1e-10)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert sum(g.abs().sum() for g in got.values()) > 0


def test_batch_sample_gradients_without_coupling_are_each_samples_own_and_other_layers_use_vjp():
    """No batch norm: the rows equal SampleGradients'; a group-norm parameter takes the general (vjp) path."""
    torch.manual_seed(0)
    model = build_model("cnn", (1, 16, 16), 10, padding=2).train()
    x, y = torch.rand(5, 1, 16, 16), torch.randint(0, 10, (5,))
    assert not couples_samples(model)
    own = SampleGradients(model)(x, y)
    got = batch_sample_gradients(model, x, y)
    for name in own:
        torch.testing.assert_close(got[name], own[name], rtol=1e-4, atol=1e-5)
    grouped = build_model("resnet18", (3, 16, 16), 10, norm="group", width=2).train().double()
    xg = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    names = [n for n, _ in grouped.named_parameters()][:4]  # conv, group norm weight and bias, conv
    expected = _jacobian_loop(grouped, xg, y[:4], names)
    got = batch_sample_gradients(grouped, xg, y[:4], names)
    for name in names:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-9, atol=1e-10)


def test_batch_sample_gradients_refuse_bad_input():
    model = build_model("cnn", (1, 16, 16), 10, padding=2)
    x, y = torch.rand(3, 1, 16, 16), torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="no parameters"):
        batch_sample_gradients(model, x, y, ["nope.weight"])
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        batch_sample_gradients(model, x, y[:2])
