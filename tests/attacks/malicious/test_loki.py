"""LOKI (Zhao et al., S&P 2024): every client's images read from the secure aggregate of FedAvg updates."""
import pytest
import torch

from fedleak.attacks import ATTACKS
from fedleak.attacks.base import AttackContext
from fedleak.attacks.malicious.loki import LokiAttack, with_loki_block
from fedleak.cases import Audit, ThreatModel
from fedleak.data import load_dataset
from fedleak.metrics.extraction import best_points
from fedleak.experiments.loki import THRESHOLD
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.metrics.image import ssim
from fedleak.models import build_model

CLIENTS, IMAGES, STEPS, BINS = 4, 32, 4, 256


class OneSlot(LokiAttack):
    """LOKI without its point: every client gets client 0's kernels, so all imprints share one block."""

    def prepare(self, model, context):
        sent, secret = super().prepare(model, AttackContext(context.input_shape, context.num_classes, context.round,
                                                            (0,), context.public, context.seed, context.device))
        return {c: sent[0] for c in context.clients}, secret


def leak(attack):
    """Share of all clients' images (and per client) whose nearest reconstruction has SSIM > 0.9, one FedAvg
    round of ``STEPS`` local SGD steps, secure aggregation."""
    train, test = load_dataset("bundled", split="train"), load_dataset("bundled", split="test")
    shape = train.info.input_shape
    model = with_loki_block(build_model("fcnn", shape, 10, widths=(32, 16)), shape, CLIENTS, BINS)
    config = FLConfig(algorithm="fedavg", num_clients=CLIENTS, rounds=1, batch_size=IMAGES // STEPS,
                      local_steps=STEPS, optimizer="sgd", lr=0.01, seed=0)
    audit = Audit(attack, ThreatModel(server="malicious", observes="secure_aggregate", protocol="fedavg"),
                  public=test.inputs(slice(None)))
    build_federation(FederationSpec(dataset="bundled", model="fcnn"), config, audit=audit, model=model,
                     datasets=(train, test), progress=False).run()
    (record,) = audit.records
    truth = record.truth[0]
    leaked = ssim(best_points(record.reconstruction.inputs, truth).clamp(0, 1), truth) > THRESHOLD
    return record, float(leaked.float().mean()), leaked.view(CLIENTS, IMAGES).float().mean(dim=1)


def test_loki_reads_every_clients_images_from_the_secure_aggregate_of_fedavg_updates():
    record, rate, per_client = leak(ATTACKS.build("loki", num_bins=BINS))
    assert record.source == -1 and record.clients == tuple(range(CLIENTS))
    assert len(record.truth[0]) == CLIENTS * IMAGES
    assert rate >= 0.7, rate  # expected about (1 - 1/256)^31 = 0.89: images alone in their bin
    assert per_client.min() >= 0.5, per_client
    # the attacker's own test (on the quantisation grid) declares only exact single images
    assert record.scores["declared"] >= 0.6 * CLIENTS * IMAGES
    assert record.scores["leaked"] == record.scores["declared"]


def test_without_a_block_per_client_the_imprints_overlay():
    _, own_blocks, _ = leak(ATTACKS.build("loki", num_bins=BINS))
    _, one_block, _ = leak(OneSlot(num_bins=BINS))
    assert one_block < own_blocks - 0.15, (one_block, own_blocks)


def test_loki_refuses_what_it_cannot_do():
    model = build_model("fcnn", (1, 28, 28), 10, widths=(8,))
    with pytest.raises(ValueError, match="brightness prior"):
        ATTACKS.build("loki").prepare(model, AttackContext((1, 28, 28), 10, clients=(0,)))
    armed = with_loki_block(model, (1, 28, 28), 2, 16)
    with pytest.raises(ValueError, match=r"2 client slots; clients \[2\] have none"):
        ATTACKS.build("loki", feature_mean=0.3, feature_std=0.1).prepare(armed, AttackContext((1, 28, 28), 10,
                                                                                              clients=(0, 2)))
    with pytest.raises(ValueError, match="reads images"):
        with_loki_block(build_model("fcnn", (784,), 10, widths=(8,)), (784,), 2, 16)


def test_each_client_receives_its_own_kernels_and_nothing_else():
    model = build_model("fcnn", (1, 28, 28), 10, widths=(8,))
    sent, secret = ATTACKS.build("loki", feature_mean=0.3, feature_std=0.1, num_bins=16).prepare(
        model, AttackContext((1, 28, 28), 10, clients=(0, 1, 2)))
    assert sorted(sent) == [0, 1, 2] and secret.layer == "loki.imprint"
    for client, own in sent.items():
        kernels = own.loki.conv.weight.detach()
        assert torch.count_nonzero(kernels) == 1 and kernels[client, 0, 1, 1] > 0
        assert list(own.state_dict()) == list(sent[0].state_dict())  # one architecture for all
