"""Dropout: Bernoulli(1 - p) keep-masks, scaling, eval behaviour and its placement per model."""
import pytest
import torch

from fedleak.defenses import StochasticDropout, apply_defenses, stochastic_modules
from fedleak.models import build_model


def test_mask_statistics_and_scaling():
    torch.manual_seed(0)
    layer = StochasticDropout(0.25).train()
    x = torch.rand(64, 32, 32) + 0.5
    out = layer(x)
    mask = layer.last_draw
    assert abs(mask.mean().item() - 0.75) < 0.01  # 65k Bernoulli(0.75) draws: std of the mean ~0.002
    torch.testing.assert_close(out, x * mask / 0.75)
    torch.testing.assert_close((out == 0).float(), 1 - mask)


def test_eval_is_identity_unless_overridden():
    layer = StochasticDropout(0.5).eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(layer(x), x)
    assert layer.last_draw is None
    layer.override = torch.tensor([[1.0, 0.0, 1.0, 0.0]]).expand(3, 4)
    torch.testing.assert_close(layer(x), x * layer.override * 2)


@pytest.mark.parametrize("p", [-0.1, 1.0, "0.2"])
def test_bad_rate(p):
    with pytest.raises(ValueError, match="dropout rate"):
        StochasticDropout(p)


@pytest.mark.parametrize("name,shape,opts,expected", [
    ("cnn", (1, 32, 32), {}, ["block1.dropout_relu", "block2.dropout_relu", "block3.dropout_relu"]),
    ("resnet18", (3, 16, 16), {"norm": "group", "width": 8}, ["dropout_flatten"]),
    ("vit_small", (1, 8, 8), {"depth": 2, "width": 16, "heads": 2},
     ["dropout_embed", "blocks.0.mlp.dropout_act", "blocks.0.mlp.dropout_fc2", "blocks.1.mlp.dropout_act",
      "blocks.1.mlp.dropout_fc2"]),
])
def test_default_placement(name, shape, opts, expected):
    model = build_model(name, shape, 10, **opts)
    defended, _, _ = apply_defenses(model, "dropout", model_name=name, input_shape=shape)
    assert [n for n, _ in stochastic_modules(defended)] == expected
    assert all(m.p == 0.25 for _, m in stochastic_modules(defended))
    assert defended(torch.rand(2, *shape)).shape == (2, 10)


def test_placement_is_what_the_model_declares_not_what_it_is_called():
    """The authors' points travel with the model (``defense_points``), whatever name the caller gives it; the same
    network without the declaration is placed from its anatomy (after every hidden activation)."""
    model = build_model("resnet18", (3, 16, 16), 10, norm="group", width=8)
    defended, _, _ = apply_defenses(model, "dropout", model_name="my-net", input_shape=(3, 16, 16))
    assert [n for n, _ in stochastic_modules(defended)] == ["dropout_flatten"]
    del model.defense_points
    traced, _, _ = apply_defenses(model, "dropout", model_name="resnet18", input_shape=(3, 16, 16))
    assert len(stochastic_modules(traced)) > 1 and "dropout_flatten" not in dict(stochastic_modules(traced))


def test_placement_by_name():
    model = build_model("cnn", (1, 32, 32), 10)
    defended, _, _ = apply_defenses(model, "dropout:p=0.1:at=block2.conv+flatten", model_name="cnn",
                                    input_shape=(1, 32, 32))
    modules = stochastic_modules(defended)
    assert [n for n, _ in modules] == ["block2.dropout_conv", "dropout_flatten"]
    assert modules[0][1].p == 0.1
