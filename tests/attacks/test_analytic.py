"""Passive analytic extraction (paper 002 §5, Eq. 5) measured against the true inputs."""
import pytest
import torch
import torch.nn as nn

from fedleak.attacks.analytic import (LayerSecret, extract_at_layer, extract_linear, identity_map, individual_rows,
                                      layer_gradients)
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.cases.scoring import point_scores, score
from fedleak.metrics.extraction import match_extractions
from fedleak.models import build_model


def relu_net(features: int = 20, hidden: int = 30, classes: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def test_single_input_through_relu_layer_is_extracted_exactly():
    model = relu_net()
    x = torch.rand(1, 20)
    grads = batch_gradients(model, x, torch.tensor([2]))
    inputs, rows = extract_linear(grads["0.weight"], grads["0.bias"])
    assert len(rows) > 0  # some neurons are active
    assert torch.allclose(inputs, x.expand_as(inputs), rtol=0, atol=1e-6)
    # inactive neurons (zero bias gradient) are exactly the ones the ReLU switched off
    with torch.no_grad():
        active = (model[0](x)[0] > 0).nonzero().squeeze(1)
    assert torch.equal(rows, active)


def test_one_sgd_step_delta_gives_the_same_inputs_as_the_gradient():
    model = relu_net()
    x = torch.rand(1, 20)
    grads = batch_gradients(model, x, torch.tensor([1]))
    delta = {k: -0.1 * g for k, g in grads.items()}  # FedAvg, one plain SGD step, lr 0.1
    from_delta, _ = extract_linear(delta["0.weight"], delta["0.bias"])
    assert torch.allclose(from_delta, x.expand_as(from_delta), atol=1e-6)


def test_passive_attack_on_a_batch_recovers_some_points_exactly():
    data = load_dataset("bundled")
    x, y = data[torch.arange(100)]
    torch.manual_seed(1)
    model = build_model("fcnn", (1, 28, 28), 10, widths=(1000, 64))
    grads = batch_gradients(model, x, y)
    reconstruction = extract_at_layer(grads, LayerSecret("fc1.linear", identity_map((1, 28, 28))))
    assert 0.0 < score(reconstruction, x)["R"] < 0.5  # §8.2: a few inputs leak, most rows are overlays
    match = match_extractions(reconstruction.inputs, x)
    # the attacker's own verdict (8-bit grid) agrees with the ground truth
    assert torch.equal(reconstruction.declared, match.exact)
    unique = reconstruction.declared_points()
    assert len(unique) == int(point_scores(reconstruction, x).recovered.sum())


def test_individual_rows_without_quantisation_needs_two_agreeing_rows():
    x = torch.rand(3, 10)
    candidates = torch.stack([x[0], x[0] * (1 + 1e-7), 0.5 * (x[1] + x[2]), x[1]])
    assert individual_rows(candidates, levels=None).tolist() == [True, True, False, False]


def test_missing_layer_names_the_layers_that_exist():
    grads = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    with pytest.raises(KeyError, match="layers with a bias: a"):
        layer_gradients(grads, "fc1.linear")
    with pytest.raises(ValueError, match="not a fully connected layer"):
        layer_gradients({"c.weight": torch.zeros(2, 3, 3, 3), "c.bias": torch.zeros(2)}, "c")
