"""The weight-forensics detectors and the first-contact chain: each flags the manipulations it is meant for at
round 1 and passes benign models, untrained and trained (Adam, which shifts whole rows of a layer reading ReLU
outputs one way)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from detection_data import SHAPE
from fedleak.attacks import AttackContext, prepare
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.detection import DEMOTED, FIRST_CONTACT, SIGNATURES, build_detector, first_contact_chain
from fedleak.fl.training import task_loss
from fedleak.models import build_model

TOKENS = (12,)


def _model(name, shape=SHAPE, classes=10, **options):
    torch.manual_seed(0)
    return build_model(name, shape, classes, **options)


def _trained(model, x, y, steps=10):
    """``model`` after ``steps`` Adam steps on ``(x, y)``: a benign, trained model."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        task_loss(model, model(x), y).backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def benign(batch16):
    """Benign models of every image family fedleak has, untrained and trained, and the text models."""
    x, y = batch16
    models = {
        "cnn": _model("cnn", padding=2), "fcnn": _model("fcnn", widths=(64, 32)),
        "vgg_cnn": _model("vgg_cnn", channels=(8, 16), hidden=64),
        "resnet18-batch": _model("resnet18", (1, 32, 32), norm="batch"),
        "resnet18-group": _model("resnet18", (1, 32, 32), norm="group"),
        "vit_small": _model("vit_small", (1, 16, 16), depth=1, width=32, heads=2),
    }
    models["fcnn-trained"] = _trained(_model("fcnn", widths=(64, 32)), x[:64], y[:64])
    models["vgg_cnn-trained"] = _trained(_model("vgg_cnn", channels=(8, 16), hidden=64), x[:64], y[:64])
    tokens = torch.randint(0, 16, (64, *TOKENS), generator=torch.Generator().manual_seed(0))
    models["text_transformer"] = _model("text_transformer", TOKENS, vocab_size=16, width=32, heads=2)
    models["imdb_fc-trained"] = _trained(_model("imdb_fc", TOKENS, 2, vocab_size=16, embed_dim=8, hidden=32),
                                         tokens, (tokens.sum(1) % 2))
    return models


@pytest.mark.parametrize("name", ["degenerate_rows", "parallel_rows", "mirrored_rows", "sign_imbalance"])
def test_no_benign_model_is_flagged(benign, batch16, name):
    x, y = batch16
    for label, model in benign.items():
        batch = (x[:32], y[:32]) if "text" not in label and "imdb" not in label else (
            torch.zeros(4, *TOKENS, dtype=torch.long), torch.zeros(4, dtype=torch.long))
        verdict = build_detector(name)(model, model, [batch])
        assert not verdict.flagged, f"{name} flags the benign {label}: {verdict.reason()}"


def _manipulated(name, model, shape=SHAPE, classes=10, public=None, **options):
    context = AttackContext(shape, classes, clients=(0, 1), public=public)
    sent, _ = prepare(name, model, context, **options)
    return sent[0] if isinstance(sent, dict) else sent


def test_each_signature_flags_the_manipulations_it_is_meant_for(batch16):
    x, _ = batch16
    mean, std = brightness_prior(x)
    fcnn, vgg = _model("fcnn", widths=(64, 32)), _model("vgg_cnn", channels=(8, 16), hidden=64)
    transformer = _model("text_transformer", TOKENS, vocab_size=16, width=32, heads=2)
    imdb = _model("imdb_fc", TOKENS, 2, vocab_size=16, embed_dim=8, hidden=32)
    cases = {
        "degenerate_rows": [_manipulated("class_fishing", fcnn, target_class=3),
                            _manipulated("feature_fishing", vgg, feature=0, threshold=0.0),
                            _manipulated("curious_kernels", vgg), _manipulated("input_forwarding", vgg),
                            _manipulated("decepticons", transformer, TOKENS, tokens_per_update=64),
                            _manipulated("model_inconsistency", fcnn, target=1, inner="class_fishing",
                                         inner_options={"target_class": 0}),
                            _manipulated("loki", fcnn, num_bins=16, public=x)],
        "parallel_rows": [_manipulated("robbing_the_fed", fcnn, variant="reuse", feature_mean=mean, feature_std=std),
                          _manipulated("robbing_the_fed", vgg, num_bins=32, feature_mean=mean, feature_std=std)],
        "mirrored_rows": [_manipulated("trap_weights", fcnn)],  # on the VGG the forwarding scales the columns,
        # and its one-hot forwarding kernels are degenerate rows:
        "degenerate_rows ": [_manipulated("trap_weights", vgg)],
        "sign_imbalance": [_manipulated("text_embedding", imdb, TOKENS, 2, seq_len=TOKENS[0])],
    }
    for name, models in cases.items():
        for model in models:
            verdict = build_detector(name.strip())(model)
            assert verdict.flagged and verdict.layer, f"{name} misses a manipulation: {verdict.reason()}"


def test_the_first_contact_chain_refuses_at_round_one_and_runs_on_a_language_model(batch16):
    x, y = batch16
    fcnn = _model("fcnn", widths=(64, 32))
    assert set(DEMOTED) == {"degenerate_rows", "parallel_rows", "mirrored_rows"}  # open-world false alarms
    default = first_contact_chain(fcnn, samples=32)
    assert [v.detector for v in default.check(fcnn, (x[:32], y[:32]), remember=False)] == list(FIRST_CONTACT)
    trap = _manipulated("trap_weights", fcnn)
    assert default.refusal(default.check(trap, (x[:32], y[:32]), remember=False)) is None  # what demotion costs
    chain = first_contact_chain(fcnn, samples=32, names=SIGNATURES)  # the demoted signatures, kept as an option
    assert [v.detector for v in chain.check(fcnn, (x[:32], y[:32]), remember=False)] == list(SIGNATURES)
    refused = chain.refusal(chain.check(trap, (x[:32], y[:32]), remember=False))
    assert refused is not None and refused.detector == "mirrored_rows"
    # an embedding + linear language model with (B, L, V) outputs: benign passes, a fished output layer does not
    torch.manual_seed(0)
    language_model = nn.Sequential(nn.Embedding(16, 8), nn.Linear(8, 16))
    tokens = torch.randint(0, 16, (32, 6), generator=torch.Generator().manual_seed(1))
    batch = (tokens, tokens.roll(-1, dims=1))
    lm_chain = first_contact_chain(language_model, samples=32, names=SIGNATURES)
    assert lm_chain.refusal(lm_chain.check(language_model, batch, remember=False)) is None
    for name in ("self_audit", "warmup_zscore", "dsnr"):  # the data-reading detectors run on (B, L, V) outputs
        assert build_detector(name)(language_model, language_model, [batch]).score >= 0
    fished = _manipulated("class_fishing", language_model, (6,), 16, target_class=2)
    assert lm_chain.refusal(lm_chain.check(fished, batch, remember=False)).detector == "degenerate_rows"


def test_weight_forensics_refuse_what_is_not_a_model_and_check_thresholds():
    with pytest.raises(TypeError, match="nn.Module"):
        build_detector("degenerate_rows")({"weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="threshold"):
        build_detector("mirrored_rows", threshold=float("nan"))
