"""The leakage self-audit: the server's readouts of the client's own would-be gradient, against the truth."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from fedleak.attacks import AttackContext, prepare
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior
from fedleak.data import load_dataset
from fedleak.detection import DETECTORS, build_detector
from fedleak.detection.self_audit import self_audit
from fedleak.data.tokens import image_tokens
from fedleak.fl.training import task_loss
from fedleak.models import build_model

from detection_data import SHAPE


def test_robbing_the_fed_is_flagged_at_first_contact_and_the_trained_cnn_is_not(benign_cnn, batch16):
    x, y = batch16
    mean, std = brightness_prior(x[64:])
    received, _ = prepare("robbing_the_fed", benign_cnn, AttackContext(SHAPE, 10), num_bins=64,
                          feature_mean=mean, feature_std=std)
    batch = [(x[:32], y[:32])]
    benign = self_audit(benign_cnn, batches=batch, batch_size=32)
    malicious = self_audit(received, batches=batch, batch_size=32)
    assert not benign.flagged and benign.score <= benign.threshold
    assert malicious.flagged and malicious.layer == "imprint.linear"
    named = malicious.details["samples"]
    assert len(named) == round(malicious.score * 32) and len(named) > 8
    # the named samples are what the server reads: check one against the real parameter gradient, without hooks
    model = received.train()
    model.zero_grad()
    task_loss(model, model(x[:32]), y[:32]).backward()
    layer = model.get_submodule("imprint.linear")
    sample, risk = named[0], malicious.details["at_risk"]["imprint.linear"][str(named[0])]
    row = risk["row"]
    cuts = -layer.bias.detach() / layer.weight.detach().norm(dim=1)
    above = (cuts > cuts[row]).nonzero().flatten()
    nxt = above[cuts[above].argmin()] if len(above) else None
    dw = layer.weight.grad[row] - (layer.weight.grad[nxt] if nxt is not None else 0)
    db = layer.bias.grad[row] - (layer.bias.grad[nxt] if nxt is not None else 0)
    readout = dw / db
    truth = x[sample].flatten()
    assert (readout - truth).norm() / truth.norm() < malicious.details["tolerance"]


def test_decepticons_is_flagged_and_the_benign_transformer_is_not():
    data = image_tokens(load_dataset("bundled", size=(16, 16)))
    x, y = data.inputs(slice(0, 32)), data.y[:32]
    torch.manual_seed(0)
    model = build_model("text_transformer", data.info.input_shape, data.info.num_classes)
    received, _ = prepare("decepticons", model, AttackContext(data.info.input_shape, data.info.num_classes),
                          tokens_per_update=32 * x.shape[1])
    benign = self_audit(model, batches=[(x, y)])
    malicious = self_audit(received, batches=[(x, y)])
    assert not benign.flagged
    assert malicious.flagged and malicious.details["samples"]
    assert "recovers" in malicious.reason()


def test_self_audit_is_registered_checks_its_options_and_refuses_a_model_it_cannot_read():
    assert "self_audit" in DETECTORS
    with pytest.raises(ValueError, match="option tolerance must be"):
        build_detector("self_audit", tolerance=0.0)
    no_bias = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with pytest.raises(ValueError, match="fully connected layers with a bias"):
        self_audit(no_bias, batches=[(torch.rand(4, 4), torch.tensor([0, 1, 0, 1]))])


def test_hidden_features_that_all_look_alike_are_not_counted_as_recovered(batch16):
    """A benign VGG-CNN's first linear layer reads post-convolution features that nearly coincide across samples:
    any average of them lies within 5% of each one's norm. Measured against each input's distance from the batch's
    centre, the readout of a benign layer recovers few samples (the rows one sample alone activates: passive
    leakage), while the imprint of Robbing the Fed still
    recovers them exactly."""
    x, y = batch16
    torch.manual_seed(0)
    vgg = build_model("vgg_cnn", SHAPE, 10, channels=(8, 16), hidden=128)
    verdict = self_audit(vgg, batches=[(x[:32], y[:32])], batch_size=32)
    assert not verdict.flagged, verdict.reason()  # with the norm as the yardstick: 0.53-0.72 of the batch
    mean, std = brightness_prior(x)
    robbed, _ = prepare("robbing_the_fed", vgg, AttackContext(SHAPE, 10), num_bins=64, feature_mean=mean,
                        feature_std=std)
    verdict = self_audit(robbed, batches=[(x[:32], y[:32])], batch_size=32)
    assert verdict.flagged and verdict.details["per_layer"][verdict.layer]["exact"] > 8
