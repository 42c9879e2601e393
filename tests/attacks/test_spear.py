"""SPEAR (Dimitrov et al., NeurIPS 2024) against the true batch: exact at B = 8 on a 256-wide FC-ReLU layer, and
B = 16 (steered proposals), and nothing declared when the gradient is no longer low-rank and sparse (DP noise, a
batch beyond the budget)."""
import pytest
import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext, Observed
from fedleak.cases import score
from fedleak.data import load_dataset
from fedleak.fl.training import task_loss
from fedleak.models import build_model


@pytest.fixture(scope="module")
def setting():
    data = load_dataset("bundled")
    torch.manual_seed(0)
    model = build_model("fcnn", data.info.input_shape, data.info.num_classes, widths=(256, 128))
    return data, model


def observed_gradient(model, x, y, *, noise: float = 0.0) -> Observed:
    loss = task_loss(model, model(x), y)
    names = [n for n, _ in model.named_parameters()]
    grads = torch.autograd.grad(loss, list(model.parameters()))
    generator = torch.Generator().manual_seed(1)
    update = {n: (g + noise * torch.randn(g.shape, generator=generator)).unsqueeze(0) for n, g in zip(names, grads)}
    return Observed(update, "gradient", (0,), (len(x),), (model,))


def attack(model, **options):
    spear = ATTACKS.build("spear", **options)
    sent, secret = spear.prepare(model, AttackContext.of(model))
    assert sent is model  # an honest server
    return spear, secret


@pytest.mark.parametrize("start", [0, 100])
def test_spear_recovers_a_batch_of_8_exactly(setting, start):
    data, model = setting
    x, y = data[slice(start, start + 8)]
    spear, secret = attack(model)
    reconstruction = spear.reconstruct(observed_gradient(model, x, y), secret, None)
    assert reconstruction.info["status"] == "exact" and len(reconstruction) == 8
    assert bool(reconstruction.declared.all())
    error = torch.cdist(x.flatten(1).double(), reconstruction.inputs.flatten(1).double()).min(dim=1).values
    assert float(error.max() / x.flatten(1).norm(dim=1).mean()) < 1e-4
    scores = score(reconstruction, x, y)
    assert scores["leaked"] == 8 and scores["recall"] == 1.0


def test_spear_recovers_a_batch_of_16_exactly(setting):
    data, model = setting
    x, y = data[slice(100, 116)]
    spear, secret = attack(model, proposals=1_000_000)  # uniform rows alone: ~3e5 proposals per sample
    reconstruction = spear.reconstruct(observed_gradient(model, x, y), secret, None)
    assert reconstruction.info["status"] == "exact"
    scores = score(reconstruction, x, y)
    assert scores["leaked"] == scores["declared"] == 16


def test_spear_declares_nothing_under_dp_noise(setting):
    data, model = setting
    x, y = data[slice(0, 8)]
    spear, secret = attack(model)
    reconstruction = spear.reconstruct(observed_gradient(model, x, y, noise=1e-4), secret, None)
    assert "not low-rank" in reconstruction.info["status"]
    assert len(reconstruction.declared_points()) == 0
    assert score(reconstruction, x, y)["leaked"] == 0


def test_spear_does_not_claim_a_batch_beyond_its_budget(setting):
    data, model = setting
    x, y = data[slice(0, 24)]
    spear, secret = attack(model, proposals=20_000)  # B = 24 needs ~2^23 proposals
    reconstruction = spear.reconstruct(observed_gradient(model, x, y), secret, None)
    assert reconstruction.info["status"] != "exact"
    scores = score(reconstruction, x, y)
    assert scores["declared"] == scores["leaked"] < 24  # whatever it still claims is true; the batch is not whole


def test_spear_refuses_a_layer_without_relu():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    with pytest.raises(ValueError, match="ReLU"):
        ATTACKS.build("spear").prepare(model, AttackContext((16,)))


class FunctionalReLU(torch.nn.Module):
    """A linear layer with F.relu in forward, as tutorials write it (no nn.ReLU module)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 2)

    def forward(self, x):
        return self.fc2(torch.nn.functional.relu(self.fc1(x.flatten(1))))


def test_spear_reads_a_functional_relu_exactly():
    torch.manual_seed(0)
    model = FunctionalReLU()
    spear = ATTACKS.build("spear")
    sent, secret = spear.prepare(model, AttackContext((16,)))  # no "not followed by a ReLU" refusal
    x, y = torch.rand(1, 16), torch.tensor([1])  # the audit's default batch of one
    scores = score(spear.reconstruct(observed_gradient(sent, x, y), secret, None), x, y)
    assert scores["leaked"] == 1  # the input, exactly


def test_spear_names_what_reads_a_layer_without_relu():
    with pytest.raises(ValueError, match="read by Tanh"):
        ATTACKS.build("spear").prepare(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(),
                                                           torch.nn.Linear(8, 2)), AttackContext((16,)))
