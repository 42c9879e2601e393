"""One client's batches under one attack without a federation: the update as the client computes it, read back by
the attack from what the server observed, each batch scored against itself."""
import pytest
import torch

from fedleak.attacks import ATTACKS, AttackContext
from fedleak.cases.batch import attack_batches, client_update
from fedleak.data import load_dataset
from fedleak.defenses.pruning import prune_gradients
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model


@pytest.fixture(scope="module")
def batch():
    data = load_dataset("bundled")
    return data.inputs(slice(0, 40)), data.y[:40]


def _model():
    torch.manual_seed(0)
    return build_model("fcnn", (1, 28, 28), 10, widths=(400, 16))


def test_the_entries_the_server_reads_are_those_of_the_whole_gradient(batch):
    x, y = batch
    model = _model()
    whole = batch_gradients(model, x, y)
    reads = ("fc1.linear.weight", "fc1.linear.bias")
    part = client_update(model, x, y, reads=reads)
    assert set(part) == set(reads) and all(torch.equal(part[k], whole[k]) for k in reads)
    pruned = client_update(model, x, y, reads=reads, update_defense=lambda u: prune_gradients(u, 0.5)[0])
    assert float((pruned["fc1.linear.weight"] == 0).float().mean()) >= 0.5
    with pytest.raises(KeyError, match="no trainable parameter"):
        client_update(model, x, y, reads=("fc9.weight",))


def test_each_batch_is_read_from_its_own_update_and_scored_against_itself(batch):
    x, y = batch
    attack = ATTACKS.build("trap_weights", scale_factor=0.9, seed=0)
    sent, secret = attack.prepare(_model(), AttackContext((1, 28, 28)))
    victims = [(x[i:i + 1], y[i:i + 1]) for i in range(6)]  # B = 1: a single input behind every active row
    outcomes = attack_batches(attack, sent, secret, victims, reads=(f"{secret.layer}.weight", f"{secret.layer}.bias"))
    assert len(outcomes) == 6
    leaked = [o for o in outcomes if o.scores["R"] == 1.0]
    assert len(leaked) >= 4  # most single images activate some trap row
    for outcome, (xi, _) in zip(outcomes, victims):
        if len(outcome.reconstruction):
            assert torch.allclose(outcome.reconstruction.inputs[0], xi[0], atol=1e-5)  # its own image, no other
    shown, best, psnr = leaked[0].shown()
    assert best.shape == shown.shape and float(psnr[0]) >= 60
    with pytest.raises(ValueError, match="at least one batch"):
        attack_batches(attack, sent, secret, [])
