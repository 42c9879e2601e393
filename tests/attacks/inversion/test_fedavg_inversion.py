"""FedAvg inversion (Dimitrov et al. 2022) on fedleak's FedAvg protocol, against IG on the same update."""
import copy
import dataclasses

import pytest
import torch
import torch.nn as nn

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import Knowledge, LocalTraining
from fedleak.cases import Audit, ThreatModel
from fedleak.cases.scoring import score
from fedleak.data import load_dataset
from fedleak.fl import FederationSpec, FLConfig, build_federation

LR, BATCH, EPOCHS, ITERATIONS = 0.1, 2, 2, 150


def tiny_cnn(input_shape, num_classes) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, num_classes))
    model.input_shape, model.num_classes = input_shape, num_classes
    return model


def test_fedavg_inversion_beats_ig_on_two_epochs_of_four_images():
    data = load_dataset("bundled", size=(16, 16))
    # the client holds four images of different classes (the inversion tests' victims), 2 epochs of 2 steps of 2
    train, test = data.subset(torch.tensor([0, 37, 74, 111])), data.subset(torch.arange(40, 56))
    config = FLConfig(algorithm="fedavg", num_clients=1, rounds=1, local_epochs=EPOCHS, batch_size=BATCH, lr=LR,
                      optimizer="sgd", seed=0)
    knowledge = Knowledge(data.info.input_shape, local_training=LocalTraining(LR, BATCH, epochs=EPOCHS))
    audit = Audit("fedavg_inversion", ThreatModel(protocol="fedavg"), knowledge=knowledge, iterations=ITERATIONS)
    model = tiny_cnn(data.info.input_shape, 10)
    sent = copy.deepcopy(model)  # the server updates its model in place after the round
    build_federation(FederationSpec(val_fraction=0.0), config, audit=audit, model=model,
                     datasets=(train, test), progress=False).run()
    (record,) = audit.records
    assert record.status == "attacked" and record.observed.kind == "delta"
    images, labels = record.truth
    assert len(images) == 4 * EPOCHS and len(record.reconstruction) == 4
    images, labels = images[:4], labels[:4]  # each epoch repeats them
    observed = dataclasses.replace(record.observed, sent=(sent,))  # IG inverts from the model as it was sent
    ig = ATTACKS.build("ig", iterations=ITERATIONS).reconstruct(observed, None, knowledge)
    ours, theirs = record.scores["psnr"], score(ig, images, labels)["psnr"]
    # measured 17.7 dB vs 13.7 dB (150 iterations). On one epoch of 2 steps, nearly one gradient, IG from the model
    # as sent does as well (20.4 dB vs 19.5 dB): the old "beats IG" there had IG invert from the moved model
    assert ours > theirs + 2.0
    # the label counts are recovered from the update (Dimitrov et al. §4.3), not given
    assert sorted(record.reconstruction.labels.tolist()) == sorted(labels.tolist())


def test_the_matched_epoch_prior_recovers_two_epochs_of_four_images():
    """Dimitrov et al. §4.2: one reconstruction per epoch, matched to the first epoch's by optimal assignment and
    pulled together; the reconstruction is the matched copies' mean. Scored against the client's true images."""
    data = load_dataset("bundled", size=(16, 16))
    train, test = data.subset(torch.tensor([0, 37, 74, 111])), data.subset(torch.arange(40, 56))
    config = FLConfig(algorithm="fedavg", num_clients=1, rounds=1, local_epochs=EPOCHS, batch_size=BATCH, lr=LR,
                      optimizer="sgd", seed=0)
    knowledge = Knowledge(data.info.input_shape, local_training=LocalTraining(LR, BATCH, epochs=EPOCHS))
    attack = ATTACKS.build("fedavg_inversion", iterations=ITERATIONS, epoch_prior="matched")
    audit = Audit(attack, ThreatModel(protocol="fedavg"), knowledge=knowledge)
    build_federation(FederationSpec(val_fraction=0.0), config, audit=audit, model=tiny_cnn(data.info.input_shape, 10),
                     datasets=(train, test), progress=False).run()
    (record,) = audit.records
    assert record.status == "attacked" and len(record.reconstruction) == 4
    assert record.reconstruction.info["epoch_prior"] == "matched"
    # measured 18.3 dB mean PSNR (150 iterations; the shared image per sample: 17.7 dB)
    assert record.scores["psnr"] > 16.0


def test_fedavg_inversion_needs_the_local_training_and_a_delta():
    attack = ATTACKS.build("fedavg_inversion", iterations=1)
    from fedleak.attacks import Observed

    model = tiny_cnn((1, 16, 16), 10)
    delta = {n: torch.zeros(1, *p.shape) for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="local_training"):
        attack.reconstruct(Observed(delta, "delta", (0,), (4,), (model,)), None, Knowledge((1, 16, 16)))
    with pytest.raises(ValueError, match="deltas"):
        attack.reconstruct(Observed(delta, "gradient", (0,), (4,), (model,)), None, Knowledge((1, 16, 16)))
    with pytest.raises(ValueError, match="orders"):
        ATTACKS.build("fedavg_inversion", orders=0)
    with pytest.raises(ValueError, match="epoch_prior"):
        ATTACKS.build("fedavg_inversion", epoch_prior="sorted")
    with pytest.raises(ValueError, match="epoch_weight"):
        ATTACKS.build("fedavg_inversion", epoch_prior="matched", epoch_weight=-1.0)
