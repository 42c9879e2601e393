"""The traced anatomy on ordinary models (benchmarks/ordinary_zoo.py): every layer and every activation found,
functional ones included, with the data flow between them (residual adds, what reads a layer's output)."""
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from fedleak.models.anatomy import trace
from ordinary_zoo import TEXT, ZOO, build

ACTIVATIONS = {
    "tutorial_net": ["relu"] * 4, "mlp": ["relu"] * 2, "module_activations": ["relu"] * 2,
    "containers": ["relu"] * 3, "batchnorm_cnn": ["relu"] * 3, "groupnorm_cnn": ["gelu"] * 2,
    "mobilenet_v2": ["relu6"] * 11, "resnet": ["relu"] * 5, "vit": ["gelu"] * 2, "all_conv": ["relu"] * 2,
    "gated": ["leaky_relu"] * 2, "text": ["relu"], "sequential_mlp": ["relu"] * 2, "lenet5": ["tanh"] * 4,
}
FOLLOWED_BY = {  # layer -> the activation that alone reads its output (None: something else reads it)
    "tutorial_net": {"conv1": "relu", "conv2": "relu", "fc1": "relu", "fc2": "relu", "fc3": None},
    "mlp": {"fc1": "relu", "fc2": "relu"},
    "module_activations": {"conv1": "relu", "conv2": "relu"},
    "containers": {"convs.0": "relu", "convs.1": "relu", "head.hidden": "relu"},
    "batchnorm_cnn": {"features.0": None, "features.1": "relu", "classifier.0": "relu"},
    "groupnorm_cnn": {"conv1": None, "gn1": "gelu"},
    "mobilenet_v2": {"features.0.0": None, "features.0.1": "relu6", "features.3.conv.7": None},
    "resnet": {"conv1": None, "bn1": "relu", "layer1.0.bn1": "relu", "layer1.0.bn2": None},
    "vit": {"blocks.0.mlp.0": "gelu"},
    "gated": {"conv": "leaky_relu"},
    "text": {"fc1": "relu"},
    "sequential_mlp": {"1": "relu", "3": "relu", "5": None},
    "lenet5": {"c1": "tanh", "c3": "tanh", "f5": "tanh", "f6": "tanh", "out": None},
}
ADDS = {"mobilenet_v2": 2, "resnet": 2, "vit": 5, "tutorial_net": 0, "batchnorm_cnn": 0}


def shape_of(name):
    return (16,) if name in TEXT else (3, 32, 32)


def module_counts(model: nn.Module) -> dict[str, int]:
    """Convolutions, linear layers and norms counted on the module tree (MultiheadAttention's out_proj never runs
    as a module: it is read by the attention's own function)."""
    inside_attention = {id(m) for a in model.modules() if isinstance(a, nn.MultiheadAttention) for m in a.modules()}
    kinds = {"conv": _ConvNd, "linear": nn.Linear, "norm": (_BatchNorm, nn.GroupNorm, nn.LayerNorm),
             "attention": nn.MultiheadAttention, "embedding": nn.Embedding}
    return {kind: sum(isinstance(m, t) and (kind == "attention" or id(m) not in inside_attention)
                      for m in model.modules()) for kind, t in kinds.items()}


@pytest.mark.parametrize("name", list(ZOO))
def test_every_layer_and_activation_of_an_ordinary_model_is_found(name):
    model = build(name)
    anatomy = trace(model, input_shape=shape_of(name))
    assert not anatomy.functional_note
    assert {kind: len(anatomy.layers(kind)) for kind in module_counts(model)} == module_counts(model)
    assert [step.function for step in anatomy.activations()] == ACTIVATIONS[name]
    for layer, activation in FOLLOWED_BY.get(name, {}).items():
        found = anatomy.activation_after(layer)
        assert (found.function if found else None) == activation, layer
    if name in ADDS:
        assert sum(step.kind == "add" for step in anatomy.steps) == ADDS[name]


def test_residual_adds_read_both_branches_and_functional_relu_reads_its_module():
    mobilenet = trace(build("mobilenet_v2"), input_shape=(3, 32, 32))
    assert mobilenet.step("features.3:add#1").reads == ("features.2.conv.7", "features.3.conv.7")
    resnet = trace(build("resnet"), input_shape=(3, 32, 32))
    add = resnet.step("layer1.0:add#1")  # out += self.shortcut(x): in place, reads the block's bn2 and shortcut
    assert add.reads == ("layer1.0.bn2", "layer1.0.shortcut")
    relu = resnet.step("layer1.0:relu#2")
    assert relu.reads == ("layer1.0:add#1",) and resnet.producer(relu) is None
    assert resnet.producer(resnet.step("model:relu#1")).name == "bn1"
    assert [s.name for s in resnet.readers("bn1")] == ["model:relu#1"]


def test_data_dependent_control_flow_is_traced_on_the_path_taken():
    """torch.fx cannot trace GatedNet (an `if` on a tensor); the traced run records the branch it took."""
    fx = pytest.importorskip("torch.fx")
    model = build("gated")
    with pytest.raises(Exception):
        fx.symbolic_trace(model)
    with torch.no_grad():
        model.conv.weight.fill_(0.1)
        model.conv.bias.zero_()
    anatomy = trace(model, input_shape=(3, 32, 32))  # zeros: mean 0 < 0.5, `extra` runs
    assert [layer.name for layer in anatomy.layers("conv")] == ["conv", "extra"]
    bright = trace(model, torch.ones(1, 3, 32, 32))  # mean about 2.4: `extra` is skipped
    assert [layer.name for layer in bright.layers("conv")] == ["conv"]


class RefusesModes(nn.Module):
    """A model whose forward fails under any torch function mode (as code that checks for one might)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if torch._C._is_torch_function_mode_enabled():
            raise RuntimeError("no modes here")
        return torch.relu(self.fc(x))


def test_a_model_that_cannot_run_under_the_recorder_falls_back_to_its_modules_and_says_so():
    anatomy = trace(RefusesModes(), input_shape=(4,))
    assert [layer.name for layer in anatomy.executed] == ["fc"]
    assert "functional calls not traced" in anatomy.functional_note and "no modes here" in anatomy.functional_note
    assert anatomy.activations() == []


def test_tracing_with_the_recorder_leaves_the_model_and_its_outputs_unchanged():
    model = build("resnet").train()
    x = torch.rand(2, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace(model, input_shape=(3, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    model.eval()
    torch.testing.assert_close(model(x), model(x))


class RefusesModesWithModules(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Linear(2 * 4 * 4, 2)

    def forward(self, x):
        if torch._C._is_torch_function_mode_enabled():
            raise RuntimeError("no modes here")
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_the_fallback_keeps_the_module_steps_and_the_defenses_say_what_they_could_not_see():
    from fedleak.checks import NotApplicable
    from fedleak.defenses import apply_defenses

    anatomy = trace(RefusesModesWithModules(), input_shape=(1, 4, 4))
    assert [s.name for s in anatomy.activations()] == ["act"] and anatomy.activation_after("conv").name == "act"
    defended, _, _ = apply_defenses(RefusesModesWithModules(), "dropout", model_name="x", input_shape=(1, 4, 4))
    assert [n for n, _ in defended.named_children()] == ["conv", "act", "fc"]  # spliced in place
    with pytest.raises(NotApplicable, match="Dropout goes after hidden activations.*functional calls not traced"):
        apply_defenses(RefusesModes(), "dropout", model_name="x", input_shape=(4,))
