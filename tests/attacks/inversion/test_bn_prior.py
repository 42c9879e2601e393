"""The batch-norm statistics prior (Yin et al. 2021, eq. 5) in the one inversion loop, at B = 4 per victim."""
import copy

import pytest
import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS, Observed
from fedleak.attacks.inversion import invert
from fedleak.attacks.base import Knowledge, LocalTraining
from fedleak.attacks.inversion.presets import PRESETS, short_run
from fedleak.cases.scoring import score
from fedleak.data import load_dataset
from fedleak.fl.client import floating_state
from fedleak.fl.training import batch_gradients

B, ITERATIONS, LR = 4, 200, 0.1


@pytest.fixture(scope="module")
def bundled16():
    return load_dataset("bundled", size=(16, 16))


def small_cnn(norm: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8) if norm else nn.Identity(), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 7 * 7, 10))


def batch_case(model, data):
    """One victim's gradient of a batch of B images (other images than those that trained the running stats)."""
    index = torch.arange(0, 8 * B, 8)
    x, y = data.inputs(index), data.y[index]
    grads = batch_gradients(copy.deepcopy(model), x, y)  # the client's copy: the server's stats stay its own
    return Observed({n: g.unsqueeze(0) for n, g in grads.items()}, "gradient", (0,), (B,), (model,)), x, y


def test_inferred_statistics_prior_beats_no_prior_on_a_batch_norm_cnn(bundled16):
    """A one-step FedAvg update of a batch of 4 (its BN buffers carry the batch's statistics), inverted by IG
    with the prior (auto: inferred from the buffers) and without; same seed, same iterations."""
    model = small_cnn(norm=True).train()
    with torch.no_grad():  # the server's model has seen other data: trained running statistics
        for start in range(200, 1480, 32):
            model(bundled16.inputs(slice(start, start + 32)))
    index = torch.arange(0, 8 * B, 8)
    x, y = bundled16.inputs(index), bundled16.y[index]
    client = copy.deepcopy(model)
    before = {k: v.clone() for k, v in floating_state(client).items()}
    grads = batch_gradients(client, x, y)  # the client's step in training mode also updates its BN buffers
    with torch.no_grad():
        for name, parameter in client.named_parameters():
            parameter -= LR * grads[name]
    delta = {k: (v - before[k]).unsqueeze(0) for k, v in floating_state(client).items()}
    observed = Observed(delta, "delta", (0,), (B,), (model,))
    knowledge = Knowledge(bundled16.info.input_shape, local_training=LocalTraining(LR, B))
    quality = {}
    for mode in ("none", "auto"):
        result = ATTACKS.build("ig", iterations=ITERATIONS, seed=0, bn_prior=mode).reconstruct(observed, None,
                                                                                               knowledge)
        assert result.inputs.shape == (B, 1, 16, 16) and result.meta["source"].tolist() == [0] * B
        quality[result.info["bn_prior"]] = score(result, x, y)["ssim"]
    assert set(quality) == {"none", "inferred"}  # auto reads the batch statistics off the update's BN buffers
    assert quality["inferred"] > quality["none"] + 0.02  # measured 0.569 vs 0.525


def test_a_model_without_batch_norm_is_unaffected(bundled16):
    model = small_cnn(norm=False)
    received, _, _ = batch_case(model, bundled16)
    knowledge = Knowledge(bundled16.info.input_shape)
    runs = [invert(short_run(PRESETS["ig"].with_(bn_prior=mode), 20), received, knowledge, seed=0)
            for mode in ("none", "auto", "running")]
    assert all(r.info["bn_prior"] == "none" for r in runs)
    assert all(torch.equal(runs[0].inputs, r.inputs) for r in runs[1:])


def test_prior_modes_without_their_statistics_are_refused(bundled16):
    model = small_cnn(norm=True)  # never trained: no running statistics
    received, _, _ = batch_case(model, bundled16)
    knowledge = Knowledge(bundled16.info.input_shape)
    for mode, reason in (("inferred", "no batch-norm buffers"), ("running", "no trained running"),
                         ("proxy", "no public data")):
        with pytest.raises(ValueError, match=reason):
            invert(short_run(PRESETS["ig"].with_(bn_prior=mode), 1), received, knowledge)
    with pytest.raises(ValueError, match="bn_prior"):
        PRESETS["ig"].with_(bn_prior="fancy")
