"""Passive extraction, trap weights (with input forwarding) and Robbing the Fed on ordinary models
(benchmarks/ordinary_zoo.py): they apply and extract real inputs where the model allows it, and otherwise say
why with a reason checked against the model's own code."""
import copy
import inspect

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fedleak.attacks import AttackContext, prepare
from fedleak.attacks.analytic import extract_at_layer
from fedleak.attacks.malicious.robbing_the_fed import brightness_prior, extract_imprint
from fedleak.checks import NotApplicable
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.metrics.extraction import match_extractions

from ordinary_zoo import IMAGE, ZOO, build, example_batch

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def data():
    train, public = load_dataset("bundled"), load_dataset("bundled", split="test")
    x, y = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:64]]
    return x, y, brightness_prior(public.inputs(slice(None)))


@pytest.mark.parametrize("name", IMAGE)
def test_imprint_inserted_before_any_image_model_recovers_exact_images(data, name):
    x, y, (mean, std) = data
    torch.manual_seed(0)
    model = build(name, SHAPE)
    robbed, secret = prepare("robbing_the_fed", model, AttackContext(SHAPE, 10), num_bins=256, feature_mean=mean,
                             feature_std=std)
    assert set(robbed.state_dict()) - set(model.state_dict()) == {"imprint.linear.weight", "imprint.linear.bias"}
    sent = copy.deepcopy(robbed)  # what a client receives: the copy runs its own imprint layer
    update = batch_gradients(sent, x, y)
    assert update["imprint.linear.bias"].abs().sum() > 0
    reconstruction = extract_imprint(update, secret)
    declared = reconstruction.inputs[reconstruction.declared]
    match = match_extractions(declared, x)
    assert len(declared) >= 10 and match.exact.all()


def test_imprint_refuses_a_text_model_because_it_reads_token_ids():
    with pytest.raises(NotApplicable, match="token ids into the embedding 'embedding'"):
        prepare("robbing_the_fed", build("text"), AttackContext((16,), 10))


def test_functional_relu_mlp_gives_passive_trap_weights_and_reused_imprint(data):
    x, y, (mean, std) = data
    torch.manual_seed(0)
    model = build("mlp", SHAPE)  # x.view(B, -1), torch.relu, x.relu()
    _, secret = prepare("passive", model, AttackContext(SHAPE, 10))
    assert secret.layer == "fc1"
    one = extract_at_layer(batch_gradients(model, x[:1], y[:1]), secret)
    assert match_extractions(one.inputs[one.declared], x[:1]).exact.all() and one.declared.any()

    trapped, secret = prepare("trap_weights", model, AttackContext(SHAPE, 10), scale_factor=0.8)
    got = extract_at_layer(batch_gradients(trapped, x, y), secret)
    declared = got.inputs[got.declared]
    assert len(declared) >= 5 and match_extractions(declared, x).exact.all()

    robbed, secret = prepare("robbing_the_fed", model, AttackContext(SHAPE, 10), variant="reuse",
                             feature_mean=mean, feature_std=std)
    got = extract_imprint(batch_gradients(robbed, x, y), secret)
    declared = got.inputs[got.declared]
    assert len(declared) >= 10 and match_extractions(declared, x).exact.all()


class FunctionalConvNet(nn.Module):
    """Convolutions kept at full size with ``F.relu`` (or another activation) in the forward code."""

    def __init__(self, activation=F.relu):
        super().__init__()
        self.activation = activation
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 28 * 28, 300)
        self.fc2 = nn.Linear(300, 10)

    def forward(self, x):
        x = self.activation(self.conv2(self.activation(self.conv1(x))))
        return self.fc2(self.activation(self.fc1(x.flatten(1))))


def test_input_forwarding_runs_through_convolutions_with_functional_relus(data):
    x, y, _ = data
    torch.manual_seed(0)
    trapped, secret = prepare("trap_weights", FunctionalConvNet(), AttackContext(SHAPE, 10), scale_factor=0.8)
    assert secret.layer == "fc1"
    got = extract_at_layer(batch_gradients(trapped, x, y), secret)
    declared = got.inputs[got.declared]
    assert len(declared) >= 5 and match_extractions(declared, x).exact.all()
    with pytest.raises(NotApplicable, match=r"'conv1'.*read by model:gelu#1 \(gelu\)"):
        prepare("trap_weights", FunctionalConvNet(F.gelu), AttackContext(SHAPE, 10))


def forward_source(model):
    return "".join(inspect.getsource(type(m).forward) for m in model.modules()
                   if type(m).__module__ == "ordinary_zoo")


REASONS = {  # model: (a phrase of trap_weights' reason, an independent check on the model that it is true)
    "tutorial_net": ("'conv1': padding \\(0, 0\\)", lambda m: m.conv1.padding == (0, 0)),
    "module_activations": ("'conv2': stride \\(2, 2\\)", lambda m: m.conv2.stride == (2, 2)),
    "containers": ("max_pool2d in the forward code", lambda m: "F.max_pool2d" in forward_source(m)),
    "batchnorm_cnn": ("'features.0'.*read by features.1 \\(BatchNorm2d\\)",
                      lambda m: isinstance(m.features[1], nn.BatchNorm2d)),
    "groupnorm_cnn": ("'conv1'.*read by gn1 \\(GroupNorm\\)", lambda m: isinstance(m.gn1, nn.GroupNorm)),
    "mobilenet_v2": ("'features.0.0'.*read by features.0.1 \\(BatchNorm2d\\)",
                     lambda m: isinstance(m.features[0][1], nn.BatchNorm2d)),
    "resnet": ("'conv1'.*read by bn1 \\(BatchNorm2d\\)", lambda m: isinstance(m.bn1, nn.BatchNorm2d)),
    "vit": ("'patch_embed'.*read by model:flatten#1 \\(flatten\\)",
            lambda m: "self.patch_embed(x).flatten(2)" in forward_source(m)),
    "all_conv": ("AllConvNet runs no linear layer", lambda m: not any(isinstance(x, nn.Linear) for x in m.modules())),
    "gated": ("'conv'.*read by model:leaky_relu#1 \\(leaky_relu\\)",
              lambda m: "F.leaky_relu(self.conv(x))" in forward_source(m)),
    "text": ("'embedding' \\(Embedding\\)", lambda m: isinstance(m.embedding, nn.Embedding)),
    "lenet5": ("'c1'.*read by model:tanh#1 \\(tanh\\)", lambda m: "torch.tanh(self.c1(x))" in forward_source(m)),
}


@pytest.mark.parametrize("name", sorted(REASONS))
def test_trap_weights_and_passive_say_truly_why_they_do_not_apply(name):
    shape = (16,) if name == "text" else (3, 32, 32)
    model = build(name, shape)
    phrase, true = REASONS[name]
    with pytest.raises(NotApplicable, match=phrase):
        prepare("trap_weights", model, AttackContext(shape, 10))
    assert true(model)
    with pytest.raises(NotApplicable, match="passive extraction needs|runs no linear layer"):
        prepare("passive", model, AttackContext(shape, 10))
    assert model(example_batch(name, shape)).shape == (4, 10)  # the model itself was not changed by the attempts


def test_every_zoo_model_is_covered():
    assert set(REASONS) | {"mlp", "sequential_mlp"} == set(ZOO)


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_loki_block_goes_in_front_of_any_image_model_and_reads_its_client(data, name):
    from fedleak.attacks.malicious.loki import extract_loki
    from fedleak.metrics.extraction import best_points
    from fedleak.metrics.image import ssim

    x, y, (mean, std) = data
    torch.manual_seed(0)
    model = build(name, SHAPE)
    sent, secret = prepare("loki", model, AttackContext(SHAPE, 10, clients=(0, 1)), num_bins=256,
                           feature_mean=mean, feature_std=std)
    assert set(sent[1].state_dict()) - set(model.state_dict()) == {
        "loki.conv.weight", "loki.conv.bias", "loki.imprint.weight", "loki.imprint.bias"}
    update = {k: -0.01 * g for k, g in batch_gradients(sent[1], x[:16], y[:16]).items()}  # one SGD step
    got = extract_loki(update, secret)
    assert not (got.meta["client"] == 0).any()  # client 1's kernels write only into its own block
    mine = got.inputs[got.meta["client"] == 1]
    assert (ssim(best_points(mine, x[:16]).clamp(0, 1), x[:16]) > 0.9).float().mean() >= 0.7
    with pytest.raises(NotApplicable, match="reads images"):
        prepare("loki", build("text"), AttackContext((16,), 10, clients=(0,)), feature_mean=0.3, feature_std=0.1)


@pytest.mark.parametrize("attack", ["text_embedding", "decepticons"])
def test_text_attacks_on_an_image_model_say_it_is_not_a_text_model(attack):
    model = build("resnet")
    assert not any(isinstance(m, nn.Embedding) for m in model.modules())
    with pytest.raises(NotApplicable, match="ResNetTiny has no|ResNetTiny has none"):
        prepare(attack, model, AttackContext((3, 32, 32), 10), tokens_per_update=16) if attack == "decepticons" \
            else prepare(attack, model, AttackContext((3, 32, 32), 10))


def test_model_inconsistency_targets_the_rounds_first_client_by_default_and_names_its_inner_attack(data):
    x, y, _ = data
    torch.manual_seed(0)
    sent, _ = prepare("model_inconsistency", build("mlp", SHAPE), AttackContext(SHAPE, 10, clients=(2, 5)))
    assert set(sent) == {2, 5}
    silent = batch_gradients(sent[5], x, y)  # the other client's update: zero but for the output bias
    assert all(g.abs().max() == 0 for k, g in silent.items() if k != "out.bias")
    assert batch_gradients(sent[2], x, y)["fc1.weight"].abs().max() > 0  # the target's trapped model
    with pytest.raises(NotApplicable, match="trap_weights does not apply: .*'conv1'.*read by bn1"):
        prepare("model_inconsistency", build("resnet"), AttackContext((3, 32, 32), 10, clients=(0, 1)))


class CastingMLP(nn.Module):
    """Casts and moves its input in forward, as models written for several devices do."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 200), nn.Linear(200, 10)

    def forward(self, x):
        x = x.float().to(self.fc1.weight.device).reshape(len(x), -1)
        return self.fc2(F.relu(self.fc1(x)))


class NormalisingMLP(CastingMLP):
    """Normalises its input in forward: the first layer no longer reads the raw input."""

    def forward(self, x):
        return super().forward((x - 0.5) / 0.25)


def test_passive_extraction_sees_through_casts_but_not_a_normalisation_in_forward():
    _, secret = prepare("passive", CastingMLP(), AttackContext(SHAPE, 10))
    assert secret.layer == "fc1"
    with pytest.raises(NotApplicable, match="'fc1' runs after model:sub#1 \\(sub\\), model:div#1 \\(div\\)"):
        prepare("passive", NormalisingMLP(), AttackContext(SHAPE, 10))
