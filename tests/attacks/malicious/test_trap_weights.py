"""Trap weights (paper 002 Algorithm 1) on the FC-NN against the passive attack on the same batch."""
import pytest
import torch

from fedleak.attacks.analytic import LayerSecret, extract_at_layer, identity_map
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_rows, trap_weights
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.cases.scoring import score
from fedleak.metrics.extraction import DEFAULT_TOLERANCE, match_extractions
from fedleak.models import build_model

SHAPE = (1, 28, 28)


def test_algorithm_1_rows_mirror_their_negative_half():
    rows = trap_rows(50, 101, scale_factor=0.8, std=0.5, generator=torch.Generator().manual_seed(0))
    negatives = (rows < 0).sum(dim=1)
    positives = (rows > 0).sum(dim=1)
    assert negatives.eq(50).all() and positives.eq(50).all()  # half each; the odd index left is zero
    for row in rows[:5]:
        neg = (-row[row < 0]).sort().values
        pos = row[row > 0].sort().values
        assert torch.allclose(pos, 0.8 * neg)
    assert rows[rows < 0].std() > 0.2  # sigma 0.5 spreads the weights widely (§6.2)


def test_trap_weights_extract_far_more_of_a_100_image_batch_than_the_passive_attack():
    data = load_dataset("bundled")
    x, y = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:100]]
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 10, widths=(1000, 64))

    grads = batch_gradients(model, x, y)
    passive = extract_at_layer(grads, LayerSecret("fc1.linear", identity_map(SHAPE)))
    passive_scores = score(passive, x)

    trapped, secret = trap_weights(model, TrapWeightsConfig(SHAPE, scale_factor=0.8, seed=1))
    assert secret.layer == "fc1.linear"
    grads = batch_gradients(trapped, x, y)
    active = extract_at_layer(grads, secret)
    scores = score(active, x)

    assert scores["R"] >= 0.25
    assert scores["R"] >= 2 * passive_scores["R"]
    assert scores["P"] > 2 * passive_scores["P"]
    # every point the attacker declares extracted is an input of the batch within the tolerance
    declared = active.inputs[active.declared]
    assert len(declared) >= 25
    match = match_extractions(declared, x)
    assert match.exact.all() and match.error.max() <= DEFAULT_TOLERANCE
    assert len(active.declared_points()) == scores["leaked"] == round(scores["R"] * len(x))


def test_bad_config_and_layer_are_named():
    with pytest.raises(ValueError, match="scaling factor"):
        TrapWeightsConfig(SHAPE, scale_factor=0.0)
    model = build_model("fcnn", SHAPE, 10, widths=(100, 10))
    with pytest.raises(ValueError, match="no linear layer 'fc9'"):
        trap_weights(model, TrapWeightsConfig(SHAPE, layer="fc9"))


def test_trap_weights_on_a_plain_module_that_registers_its_head_first():
    class HeadFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(300, 10)
            self.body = torch.nn.Linear(28 * 28, 300)

        def forward(self, x):
            return self.head(torch.relu(self.body(x.flatten(1))))

    data = load_dataset("bundled")
    x, y = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:20]]
    torch.manual_seed(0)
    trapped, secret = trap_weights(HeadFirst(), TrapWeightsConfig(SHAPE, scale_factor=0.8, seed=1))
    assert secret.layer == "body"  # the first layer to run, not the first registered
    grads = batch_gradients(trapped, x, y)
    active = extract_at_layer(grads, secret)
    declared = active.inputs[active.declared]
    assert len(declared) >= 5 and match_extractions(declared, x).exact.all()
