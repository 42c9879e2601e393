"""B = 1 victims through the defended ``fl.Client`` (paper 001 §5.2) and an honest server's attack on them."""
from __future__ import annotations

import pytest
import torch

from fedleak.cases.scoring import score
from fedleak.cases.victims import attack_victims, victim_case
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

SHAPE = (1, 8, 8)


@pytest.fixture()
def fcnn():
    torch.manual_seed(0)
    return build_model("fcnn", SHAPE, 4, widths=(16,))


@pytest.fixture()
def images():
    torch.manual_seed(1)
    return torch.rand(3, *SHAPE), torch.tensor([0, 2, 3])


def test_each_victim_sends_its_own_one_image_gradient(fcnn, images):
    x, y = images
    case = victim_case(fcnn, "fcnn", "", x, y)
    assert case.observed.kind == "gradient" and case.observed.sources == (0, 1, 2)
    assert case.observed.num_examples == (1, 1, 1) and all(m is case.model for m in case.observed.sent)
    for i in range(3):
        expected = batch_gradients(case.model, x[i:i + 1], y[i:i + 1])
        for name, gradient in expected.items():
            assert torch.allclose(case.observed.updates[name][i], gradient, atol=1e-6), (i, name)
    assert case.knowledge.defenses == () and case.knowledge.dp_clip is None and not case.knowledge.true_draws


def test_the_defended_client_says_what_the_server_knows_and_its_mods_run(fcnn, images):
    x, y = images
    case = victim_case(fcnn, "fcnn", "dropout,dp:sigma=1e-3:clip=5:seed=0,prune:p=0.5", x, y)
    assert case.knowledge.defenses == ("dropout", "dp", "prune")
    assert (case.knowledge.dp_clip, case.knowledge.dp_sigma) == (5.0, 1e-3)
    assert {tuple(t.shape[:2]) for t in case.knowledge.true_draws.values()} == {(3, 1)}  # one draw per victim
    assert set(case.knowledge.true_dp_noise) == set(case.observed.updates)
    weight = case.observed.updates["fc1.linear.weight"]
    assert float((weight == 0).float().mean()) >= 0.5  # the pruning mod ran on every victim's update


def test_an_honest_attack_on_victims_recovers_labels_and_takes_its_seed_from_the_context(fcnn, images):
    x, y = images
    case = victim_case(fcnn, "fcnn", "", x, y)
    runs = [attack_victims(case, "ig", iterations=30, seed=seed) for seed in (0, 0, 1)]
    assert torch.equal(runs[0].labels, y) and runs[0].paired
    assert torch.equal(runs[0].inputs, runs[1].inputs) and not torch.equal(runs[0].inputs, runs[2].inputs)
    assert score(runs[0], x, y, paired=True)["label_accuracy"] == 1.0
    with pytest.raises(ValueError, match="changes the model"):
        attack_victims(case, "trap_weights")


def test_victims_need_one_label_per_image(fcnn, images):
    x, y = images
    with pytest.raises(ValueError, match="V inputs"):
        victim_case(fcnn, "fcnn", "", x, y[:2])
    with pytest.raises(ValueError, match="divides the 3 inputs"):
        victim_case(fcnn, "fcnn", "", x, y, batch=2)


def test_a_victim_may_hold_a_batch(fcnn, images):
    x, y = images
    case = victim_case(fcnn, "fcnn", "", x, y, batch=3)
    assert case.observed.sources == (0,) and case.observed.num_examples == (3,)
    expected = batch_gradients(case.model, x, y)
    for name, gradient in expected.items():
        assert torch.allclose(case.observed.updates[name][0], gradient, atol=1e-6), name
