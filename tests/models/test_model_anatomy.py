"""The traced anatomy: execution order, kinds, shapes and parameters of any nn.Module, and a model left untouched."""
import pytest
import torch
import torch.nn as nn

from fedleak.defenses.bottleneck import Precode
from fedleak.defenses.dropout import StochasticDropout
from fedleak.models import build_model
from fedleak.models.anatomy import trace
from fedleak.models.attention import Attention


class HeadFirst(nn.Module):
    """Registers its classifier before its body, and calls one ReLU twice."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.act = nn.ReLU()
        self.norm = nn.GroupNorm(2, 4)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.body = nn.Linear(16, 8)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        h = self.act(self.norm(self.conv(x)))
        h = self.act(self.body(self.pool(h).flatten(1)))
        return self.head(h) * self.scale


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.attn = Attention(8, 2)
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 2)

    def forward(self, tokens):
        h = self.norm(self.embed(tokens))
        h = self.attn(self.mha(h, h, h)[0])
        return self.out(self.bn(h.mean(1)))


def test_execution_order_not_registration_order_and_a_reused_module_counted_once():
    anatomy = trace(HeadFirst(), input_shape=(1, 6, 6))
    assert [layer.name for layer in anatomy.executed] == ["", "conv", "norm", "act", "pool", "body", "head"]
    assert anatomy.first("linear").name == "body" and anatomy.last("linear").name == "head"
    assert anatomy.output_layer().name == "head"
    assert [layer.name for layer in anatomy.before("head")] == ["conv", "norm", "act", "pool", "body"]
    assert [layer.name for layer in anatomy.after("body")] == ["head"]
    act = anatomy.layer("act")
    assert act.calls == 2 and act.input_shape == (4, 6, 6) and act.output_shape == (4, 6, 6)  # its first call
    assert anatomy.layer("conv").parameters == ("conv.weight", "conv.bias")
    assert anatomy.layer("").parameters == ("scale",) and not anatomy.layer("").leaf  # owns a parameter itself
    assert anatomy.layer("body").input_shape == (16,) and anatomy.layer("head").output_shape == (3,)
    kinds = {layer.name: (layer.kind, layer.subkind) for layer in anatomy.executed}
    assert kinds == {"": ("other", None), "conv": ("conv", None), "norm": ("norm", "group"),
                     "act": ("activation", None), "pool": ("other", None), "body": ("linear", None),
                     "head": ("linear", None)}


def test_attention_embedding_and_norm_kinds():
    anatomy = trace(Mixer(), torch.randint(0, 20, (3, 5)))
    assert [layer.name for layer in anatomy.layers("attention")] == ["mha", "attn"]
    assert anatomy.layer("mha").parameters[:2] == ("mha.in_proj_weight", "mha.in_proj_bias")
    assert "mha.out_proj.weight" in anatomy.layer("mha").parameters  # out_proj never runs as a module
    assert [layer.name for layer in anatomy.layers("linear")] == ["attn.qkv", "attn.proj", "out"]
    assert anatomy.first("embedding").output_shape == (5, 8)
    assert [(layer.name, layer.subkind) for layer in anatomy.layers("norm")] == [("norm", "layer"), ("bn", "batch")]
    assert anatomy.first("norm", subkind="batch").name == "bn"
    assert anatomy.feature_shape("attn", "input") == (5, 8)


def test_registry_models_read_from_model_input_shape():
    vit = trace(build_model("vit_small", (3, 16, 16), 10, width=16, heads=2, depth=2, patch=4))
    assert vit.input_shape == (3, 16, 16)
    assert vit.first("conv").name == "embed.proj" and vit.output_layer().name == "classifier"
    assert [layer.name for layer in vit.layers("attention")] == ["blocks.0.attn", "blocks.1.attn"]
    assert vit.feature_shape("blocks.0") == (17, 16)  # a block of layers, not a layer
    text = trace(build_model("text_transformer", (6,), 2, vocab_size=30))
    assert text.first("embedding").name == "embed.token" and text.layer("embed").parameters == ("embed.position",)


def test_tracing_leaves_mode_draws_statistics_and_rng_as_they_were():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), StochasticDropout(0.5), Precode((8,), K=4),
                          nn.Linear(8, 3))
    model.train()
    model[1].eval()  # mixed modes come back as they were
    model(torch.randn(4, 6))
    draws = (model[2].last_draw, model[3].last_draw, model[3].mu)
    stats = model[1].running_mean.clone()
    rng = torch.get_rng_state()
    anatomy = trace(model, input_shape=(6,))
    assert [layer.name for layer in anatomy.layers("linear")] == ["0", "3.encoder", "3.decoder", "4"]
    assert torch.equal(torch.get_rng_state(), rng)  # Precode samples even in eval mode: the RNG is forked
    assert (model[2].last_draw, model[3].last_draw, model[3].mu) == draws
    assert [m.training for m in model] == [True, False, True, True, True] and model.training
    assert torch.equal(model[1].running_mean, stats)


def test_clear_errors():
    with pytest.raises(ValueError, match="input shape is unknown"):
        trace(HeadFirst())
    with pytest.raises(ValueError, match=r"tracing HeadFirst on an input of shape \(1, 3, 6, 6\)"):
        trace(HeadFirst(), input_shape=(3, 6, 6))
    anatomy = trace(HeadFirst(), input_shape=(1, 6, 6))
    with pytest.raises(ValueError, match="runs no attention layer"):
        anatomy.first("attention")
    with pytest.raises(ValueError, match="no linear layer 'conv'; its linear layers: body, head"):
        anatomy.pick("linear", "conv")
    with pytest.raises(ValueError, match="unknown layer kind 'dense'"):
        anatomy.layers("dense")
    with pytest.raises(ValueError, match="calls no module 'missing'"):
        anatomy.feature_shape("missing")
