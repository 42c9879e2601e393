"""Dropout, PRECODE, CVB and DP-SGD on ordinary models (benchmarks/ordinary_zoo.py): inserted by module path in
any container and run, or refused with a reason that is checked against the model itself."""

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from fedleak.checks import NotApplicable
from fedleak.defenses import apply_defenses, stochastic_modules
from fedleak.defenses.bottleneck import ConvBottleneck, cvb_point
from fedleak.defenses.dp import DPSGD
from fedleak.fl.training import batch_gradients
from fedleak.models.anatomy import trace

from ordinary_zoo import TEXT, ZOO, build, example_batch

CVB_POINTS = {"tutorial_net": "conv1", "module_activations": "act1", "containers": "convs.0",
              "batchnorm_cnn": "features.2", "groupnorm_cnn": "gn1", "mobilenet_v2": "features.0.2", "resnet": "bn1",
              "vit": "blocks.0", "all_conv": "body.1", "gated": "conv", "lenet5": "c1"}


NOT_APPLICABLE = {  # (model, defense): (a phrase of the reason, an independent check that the reason is true)
    ("mlp", "cvb"): ("MnistMLP has none", lambda m: not any(isinstance(x, nn.Conv2d) for x in m.modules())),
    ("sequential_mlp", "cvb"): ("SequentialMLP has none",
                                lambda m: not any(isinstance(x, nn.Conv2d) for x in m.modules())),
    ("text", "cvb"): ("TextClassifier has none",
                      lambda m: not any(isinstance(x, (nn.Conv2d, nn.MultiheadAttention)) for x in m.modules())),
    ("all_conv", "precode"): ("last layer is the conv layer 'classify'",
                              lambda m: not any(isinstance(x, nn.Linear) for x in m.modules())
                              and isinstance(m.classify, nn.Conv2d)),
}


def shape_of(name):
    return (16,) if name in TEXT else (3, 32, 32)


@pytest.mark.parametrize("defense", ["dropout", "precode", "cvb"])
@pytest.mark.parametrize("name", list(ZOO))
def test_inserted_defense_runs_in_any_model_or_a_true_reason_is_given(name, defense):
    model = build(name)
    if (name, defense) in NOT_APPLICABLE:
        phrase, true = NOT_APPLICABLE[name, defense]
        with pytest.raises(NotApplicable, match=phrase):
            apply_defenses(model, defense, model_name=name, input_shape=shape_of(name))
        assert true(model)
        return
    defended, _, _ = apply_defenses(model, defense, model_name=name, input_shape=shape_of(name))
    modules = stochastic_modules(defended)
    assert modules and not stochastic_modules(model)  # inserted into a copy
    x = example_batch(name)
    defended.train()
    out = defended(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    for module_name, module in modules:
        assert module.last_draw is not None and module.last_draw.shape[0] == 4, module_name  # it ran
    out.sum().backward()
    inserted = [p for n, p in defended.named_parameters() if any(n.startswith(m + ".") for m, _ in modules)]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in inserted)


@pytest.mark.parametrize("name", [n for n in ZOO if n not in ("mlp", "sequential_mlp", "text")])
def test_cvb_goes_after_the_first_activated_feature_map_or_the_first_transformer_block(name):
    model = build(name)
    anatomy = trace(model, input_shape=shape_of(name))
    assert cvb_point(anatomy) == CVB_POINTS[name]
    defended, _, _ = apply_defenses(model, "cvb", model_name=name, input_shape=shape_of(name))
    (path, cvb), = stochastic_modules(defended)
    assert isinstance(cvb, ConvBottleneck) and (cvb.beta, cvb.kernel_size) == (0.1, 5)
    traced = trace(defended, input_shape=shape_of(name))
    anchor = CVB_POINTS[name]
    order = [layer.name for layer in traced.executed]
    # the bottleneck runs right after its anchor (now spliced, or its sibling in a Sequential)
    spliced = f"{anchor}.{anchor.rpartition('.')[2]}"
    ran_before = spliced if spliced in traced.shapes else anchor
    inner = [i for i, n in enumerate(order) if n == ran_before or n.startswith(ran_before + ".")]
    assert inner and order.index(f"{path}.mu_encoder") == max(inner) + 1
    assert traced.feature_shape(path, "input") == anatomy.feature_shape(anchor)


def test_functional_activation_gets_dropout_on_its_input_and_a_reused_relu_is_skipped():
    defended, _, _ = apply_defenses(build("resnet"), "dropout", model_name="resnet", input_shape=(3, 32, 32))
    names = [n for n, _ in stochastic_modules(defended)]
    # F.relu(bn1(...)) in the stem and in each block; the F.relu after each residual add reads no single module
    assert names == ["bn1.dropout_bn1", "layer1.0.bn1.dropout_bn1", "layer2.0.bn1.dropout_bn1"]

    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.out, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2), nn.ReLU()

        def forward(self, x):
            return self.out(self.relu(self.fc2(self.relu(self.fc1(x)))))

    with pytest.raises(NotApplicable, match="relu runs 2 times per forward"):
        apply_defenses(Reused(), "dropout", model_name="reused", input_shape=(8,))


@pytest.mark.parametrize("name", ["batchnorm_cnn", "mobilenet_v2", "resnet"])
def test_dp_on_batch_norm_models_names_the_fix_and_the_fix_gives_true_per_sample_gradients(name):
    model = build(name)
    with pytest.raises(NotApplicable, match="BatchNorm.*dp:batchnorm=group"):
        apply_defenses(model, "dp:sigma=1e-3", model_name=name, input_shape=(3, 32, 32))
    norms = sum(isinstance(m, _BatchNorm) for m in model.modules())
    defended, gradient_fn, _ = apply_defenses(model, "dp:sigma=0:clip=1e9:batchnorm=group", model_name=name,
                                              input_shape=(3, 32, 32))
    assert isinstance(gradient_fn, DPSGD)
    assert not any(isinstance(m, _BatchNorm) for m in defended.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in defended.modules()) == norms
    x, y = example_batch(name), torch.tensor([0, 1, 2, 3])
    defended.eval()  # the models' own nn.Dropout would draw differently per sample and per batch
    private = gradient_fn(defended, x, y)  # no clipping, no noise: the mean of per-sample gradients
    reference = batch_gradients(defended, x, y)
    assert private.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(private[key], reference[key], rtol=1e-3, atol=1e-5)


def test_dp_refuses_a_model_whose_samples_meet_in_its_control_flow():
    defended, gradient_fn, _ = apply_defenses(build("gated"), "dp", model_name="gated", input_shape=(3, 32, 32))
    with pytest.raises(NotApplicable, match="torch.func.vmap cannot compute them for GatedNet"):
        gradient_fn(defended, example_batch("gated"), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_gets_at_least_one_defense(name):
    applied = []
    for defense in ("dp:batchnorm=group", "cvb", "precode", "dropout"):
        try:
            apply_defenses(build(name), defense, model_name=name, input_shape=shape_of(name))
            applied.append(defense)
        except NotApplicable:
            pass
    assert len(applied) >= 2, applied
