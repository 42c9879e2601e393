"""batch_dominance against SEER's shipped BN checkpoint (the malicious model it is meant for) and against the same
architecture honest, untrained and trained, on the client's own bundled 32x32 samples."""
from __future__ import annotations

import pytest
import torch

from fedleak.attacks.learned.seer import load_checkpoint
from fedleak.data import load_dataset
from fedleak.detection import DETECTORS, build_detector, first_contact_chain
from fedleak.detection.batch_dominance import DEFAULT_THRESHOLD, batch_dominance
from fedleak.fl.training import task_loss
from fedleak.models import build_model

SEER_CNN = {"norm": "batch", "padding": 2}


@pytest.fixture(scope="module")
def local():
    """A client's 32 training samples and the rest of the train split (for honest training)."""
    data = load_dataset("bundled", split="train", size=(32, 32))
    x, y = data.inputs(slice(None)), data.y
    return (x[:32], y[:32]), (x[32:], y[32:])


def honest(trained_on=None, epochs: int = 0, seed: int = 7):
    torch.manual_seed(seed)
    model = build_model("cnn", (1, 32, 32), 10, **SEER_CNN)
    if epochs:
        x, y = trained_on
        optimizer = torch.optim.Adam(model.parameters(), 2e-3)
        for _ in range(epochs):
            for start in range(0, len(x), 64):
                optimizer.zero_grad()
                task_loss(model, model(x[start:start + 64]), y[start:start + 64]).backward()
                optimizer.step()
    return model


def test_flags_seer_and_names_the_output_layer(local):
    _, seer, *_ = load_checkpoint("bn")
    verdict = batch_dominance(seer, None, [local[0]])
    assert verdict.flagged and verdict.layer == "classifier"
    assert verdict.score > DEFAULT_THRESHOLD  # measured 6.2-18 on 40 random 32-sample sets of the train split
    assert 0 <= verdict.details["sample"] < 32 and verdict.details["energy_high"] > verdict.details["energy_low"]


def test_passes_the_honest_batch_norm_cnn_untrained_and_trained(local):
    samples, rest = local
    untrained = honest()
    trained = honest(rest, epochs=2)
    x, y = rest
    with torch.no_grad():
        accuracy = float((trained.eval()(x[:500]).argmax(1) == y[:500]).float().mean())
    assert accuracy > 0.5  # it did learn (chance is 0.1)
    for model in (untrained, trained):
        verdict = batch_dominance(model, None, [samples])
        assert not verdict.flagged and verdict.score < DEFAULT_THRESHOLD / 2, verdict.reason()


def test_a_model_without_batch_norm_gives_every_sample_the_same_features_in_any_batch(local):
    torch.manual_seed(0)
    plain = build_model("cnn", (1, 32, 32), 10, padding=2)
    assert batch_dominance(plain, None, [local[0]]).score == pytest.approx(0.0, abs=1e-6)


def test_the_first_contact_chain_refuses_seer_and_not_the_honest_model(local):
    _, seer, *_ = load_checkpoint("bn")
    chain = first_contact_chain(honest(), samples=32)
    refused = chain.refusal(chain.check(seer, local[0], remember=False))
    assert refused is not None and refused.detector == "batch_dominance"
    assert chain.refusal(chain.check(honest(seed=8), local[0], remember=False)) is None


def test_bad_input_is_refused_with_the_reason(local):
    x, y = local[0]
    with pytest.raises(ValueError, match="at least 3"):
        batch_dominance(honest(), None, [(x[:2], y[:2])])
    bad = x[:8].clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        batch_dominance(honest(), None, [(bad, y[:8])])
    with pytest.raises(ValueError, match="contexts"):
        build_detector("batch_dominance", contexts=1)
    with pytest.raises(ValueError, match="threshold"):
        build_detector("batch_dominance", threshold=float("nan"))
    assert "batch_dominance" in DETECTORS
