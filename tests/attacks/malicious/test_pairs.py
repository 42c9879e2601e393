"""PAIRS (Nowak et al. 2024) against the true batch: QBI's quantile biases with weights searched on public data of
the clients' distribution (the bundled test split); the clients' batches come from the train split it never saw."""
import pytest
import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext, Observed
from fedleak.attacks.malicious.pairs import searched_weights
from fedleak.cases import score
from fedleak.data import load_dataset
from fedleak.fl.training import task_loss
from fedleak.models import build_model

NEURONS, BATCH = 200, 50


@pytest.fixture(scope="module")
def data():
    return load_dataset("bundled"), load_dataset("bundled", split="test").inputs(slice(0, 500))


def attacked(name: str, train, public, run: int):
    torch.manual_seed(run)
    model = build_model("fcnn", train.info.input_shape, train.info.num_classes, widths=(NEURONS, 64))
    attack = ATTACKS.build(name, batch_size=BATCH)
    sent, secret = attack.prepare(model, AttackContext(train.info.input_shape, 10, public=public, seed=run))
    x, y = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(run))[:BATCH]]
    grads = torch.autograd.grad(task_loss(sent, sent(x), y), list(sent.parameters()))
    update = {n: g.unsqueeze(0) for (n, _), g in zip(sent.named_parameters(), grads)}
    reconstruction = attack.reconstruct(Observed(update, "gradient", (0,), (BATCH,), (sent,)), secret, None)
    return score(reconstruction, x, y), sent


def overlap(sent, held_out) -> float:
    """Mean share of a row's held-out inputs that another row also fires for (what PAIRS lowers)."""
    with torch.no_grad():
        fires = (sent.fc1.linear(held_out.flatten(1)) > 0).float()  # (P, N)
    shared = fires.T @ fires
    return float((shared.sum() - shared.diagonal().sum()) / (shared.diagonal().sum() * (fires.shape[1] - 1)))


def test_pairs_recovers_held_out_inputs_exactly_and_spreads_its_rows(data):
    train, public = data
    held_out = train.inputs(slice(1000, 2000))
    pairs, sent_pairs = attacked("pairs", train, public, 0)
    qbi, sent_qbi = attacked("qbi", train, public, 0)
    assert pairs["recall"] >= 0.6 and pairs["declared"] == pairs["leaked"]  # measured 0.66 (QBI: 0.66)
    assert overlap(sent_pairs, held_out) < overlap(sent_qbi, held_out)  # the search's aim, on unseen inputs
    with torch.no_grad():
        share = (sent_pairs.fc1.linear(held_out.flatten(1)) > 0).float().mean()
    assert abs(float(share) - 1 / BATCH) < 0.01  # still QBI's 1/B per row


def test_one_candidate_is_qbi():
    features, rest = torch.rand(40, 6), torch.zeros(40, 3)
    weights = searched_weights(features, rest, 4, 1, 1.0, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([torch.randn(1, 6, generator=generator, dtype=torch.float64) for _ in range(3)])
    assert torch.equal(weights, draws)  # nothing to choose from: the random draws, as QBI


def test_pairs_rejects_bad_candidates():
    with pytest.raises(ValueError, match="candidates"):
        ATTACKS.build("pairs", candidates=0)
