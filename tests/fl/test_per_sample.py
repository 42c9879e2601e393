"""The one training loss and the one per-sample-gradient engine: per-sample losses average to the batch loss
(KL term included), per-sample gradients equal each sample's gradient alone, sequence outputs work."""
import pytest
import torch
import torch.nn as nn

from fedleak.defenses import apply_defenses, last_draws, overridden
from fedleak.fl.per_sample import SampleGradients, per_sample_gradients
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
