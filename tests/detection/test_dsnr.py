import pytest
import torch
import torch.nn.functional as F

from fedleak.attacks import prepare
from fedleak.detection import dsnr_check
from fedleak.detection.dsnr import per_sample_gradient_norms, weight_names
from fedleak.models import build_model


def _looped_norms(model, x, y, names):
    """Ground truth: each sample's loss term inside the batch forward pass, differentiated on its own."""
    params = dict(model.named_parameters())
    losses = F.cross_entropy(model(x), y, reduction="none")
    rows = []
    for i in range(len(x)):
        grads = torch.autograd.grad(losses[i], [params[n] for n in names], retain_graph=True)
        rows.append(torch.stack([g.norm() for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("name, options", [("cnn", {"padding": 2}), ("resnet18", {"width": 2})])
def test_per_sample_norms_match_a_loop(name, options, batch16):
    torch.manual_seed(0)
    model = build_model(name, (1, 16, 16), 10, **options).train()
    x, y = batch16[0][:6], batch16[1][:6]
    names = weight_names(model)
    got = per_sample_gradient_norms(model, x, y, names, chunk_size=4)
    assert torch.allclose(got, _looped_norms(model, x, y, names), rtol=1e-4, atol=1e-7)


def test_class_fishing_with_one_target_sample_is_flagged_and_benign_passes(benign_cnn, batch16):
    x, y = batch16
    target = int(y[0])
    keep = torch.cat([torch.tensor([0]), torch.nonzero(y != target).squeeze(1)[:31]])
    batch = [(x[keep], y[keep])]  # exactly one sample of the fished class among 32
    fishing, _ = prepare("class_fishing", benign_cnn, target_class=target)
    verdict = dsnr_check(fishing, None, batch, batch_size=32)
    assert verdict.flagged and verdict.score > 1.0, verdict.details["per_layer"]
    benign = dsnr_check(benign_cnn, None, batch, batch_size=32)
    assert not benign.flagged and benign.score < 0.5


def test_per_sample_norms_of_a_language_model_and_a_tied_layer_match_a_loop():
    """Sequence outputs (B, L, V) go through Opacus's ghost norms; a layer used twice falls back to torch.func."""

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = torch.nn.Embedding(9, 4), torch.nn.Linear(4, 9)

        def forward(self, tokens):
            return self.head(self.embed(tokens)) + self.head(self.embed(tokens).flip(1))

    torch.manual_seed(0)
    tokens = torch.randint(0, 9, (5, 6))
    language_model = torch.nn.Sequential(torch.nn.Embedding(9, 4), torch.nn.Linear(4, 9))
    for model, names in ((language_model, ["0.weight", "1.weight"]), (Tied(), ["embed.weight", "head.weight"])):
        params = dict(model.named_parameters())
        losses = F.cross_entropy(model(tokens).transpose(1, 2), tokens, reduction="none").mean(1)
        expected = torch.stack([torch.stack([g.norm() for g in torch.autograd.grad(
            losses[i], [params[n] for n in names], retain_graph=True)]) for i in range(5)])
        got = per_sample_gradient_norms(model, tokens, tokens, names)
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
