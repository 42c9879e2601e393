"""PRECODE and CVB: shapes, sampling in eval mode, reproducibility under override and the KL term."""
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from fedleak.defenses import ConvBottleneck, Precode, apply_defenses, stochastic_modules
from fedleak.fl.training import task_loss
from fedleak.models import build_model


@pytest.mark.parametrize("module,x,draw_shape", [
    (Precode((64,)), torch.randn(3, 64), (3, 256)),
    (Precode((4, 5, 5), K=16), torch.randn(3, 4, 5, 5), (3, 16)),
    (ConvBottleneck((16, 12, 12)), torch.randn(3, 16, 12, 12), (3, 8, 12, 12)),
    (ConvBottleneck((4, 6, 6)), torch.randn(2, 4, 6, 6), (2, 8, 6, 6)),         # K = 8 when C < 8
    (ConvBottleneck((17, 4, 4), kernel_size=3), torch.randn(2, 17, 16), (2, 8, 4, 4)),  # ViT tokens on a grid
    (ConvBottleneck((9, 10), kernel_size=3), torch.randn(2, 9, 10), (2, 4, 10)),   # tokens, Conv1d
])
def test_shapes_and_eval_sampling(module, x, draw_shape):
    module.eval()
    first = module(x)
    assert first.shape == x.shape and module.last_draw.shape == draw_shape
    assert not torch.allclose(module(x), first)  # samples in eval mode too
    draw = module.last_draw
    second = module(x)
    module.override = draw
    assert not torch.allclose(second, module(x))
    module.override = None


def test_override_reproduces_output():
    torch.manual_seed(1)
    module = ConvBottleneck((16, 8, 8), beta=0.1)
    x = torch.randn(2, 16, 8, 8)
    out = module(x)
    module.override = module.last_draw
    torch.testing.assert_close(module(x), out)


def test_kl_matches_closed_form_and_enters_task_loss():
    torch.manual_seed(2)
    module = Precode((10,), K=6, beta=1e-3)
    model = torch.nn.Sequential(module, torch.nn.Linear(10, 3))
    x, y = torch.randn(4, 10), torch.tensor([0, 1, 2, 0])
    out = model(x)
    kl = kl_divergence(Normal(module.mu, module.std), Normal(0.0, 1.0)).sum(1).mean()
    assert kl > 0
    torch.testing.assert_close(module.auxiliary_loss(), 1e-3 * kl)
    ce = torch.nn.functional.cross_entropy(out, y)
    torch.testing.assert_close(task_loss(model, out, y), ce + 1e-3 * kl)


def test_cvb_kl_averages_over_positions():
    torch.manual_seed(3)
    module = ConvBottleneck((8, 5, 5), beta=0.5)
    module(torch.randn(2, 8, 5, 5))
    kl = kl_divergence(Normal(module.mu, module.std), Normal(0.0, 1.0))  # (2, K, 5, 5)
    torch.testing.assert_close(module.auxiliary_loss(), 0.5 * kl.sum(1).mean())


def test_auxiliary_loss_needs_a_forward():
    with pytest.raises(RuntimeError, match="forward pass first"):
        Precode((4,)).auxiliary_loss()


@pytest.mark.parametrize("name,shape,opts,parent,K,in_shape,beta", [
    ("cnn", (1, 32, 32), {}, "", 8, (16, 14, 14), 0.1),
    ("resnet18", (3, 8, 8), {"norm": "group", "width": 16}, "", 8, (16, 8, 8), 5e-5),
    ("vit_small", (1, 8, 8), {"depth": 2, "width": 16, "heads": 2}, "blocks.", 8, (5, 4, 4), 0.1),
])
def test_cvb_default_placement(name, shape, opts, parent, K, in_shape, beta):
    model = build_model(name, shape, 10, **opts)
    defended, _, _ = apply_defenses(model, "cvb", model_name=name, input_shape=shape)
    (mod_name, module), = stochastic_modules(defended)
    assert mod_name == f"{parent}cvb"
    assert (module.K, module.in_shape, module.beta) == (K, in_shape, beta)
    assert module.kernel_size == (3 if name == "vit_small" else 5)
    container = defended.get_submodule(parent.rstrip(".")) if parent else defended
    names = [n for n, _ in container.named_children()]
    anchor = {"cnn": "block1", "resnet18": "layer1", "vit_small": "0"}[name]
    assert names[names.index(anchor) + 1] == "cvb"
    assert defended(torch.rand(2, *shape)).shape == (2, 10)


def test_precode_before_classifier_with_defaults():
    model = build_model("cnn", (1, 32, 32), 10)
    defended, _, _ = apply_defenses(model, "precode", model_name="cnn", input_shape=(1, 32, 32))
    names = [n for n, _ in defended.named_children()]
    assert names[-2:] == ["precode", "classifier"]
    assert (defended.precode.K, defended.precode.beta, defended.precode.in_shape) == (256, 1e-3, (64,))


def test_cvb_without_placement_asks_for_one():
    model = build_model("fcnn", (1, 8, 8), 10, widths=(16,))
    with pytest.raises(ValueError, match="no default placement for model 'fcnn'"):
        apply_defenses(model, "cvb", model_name="fcnn", input_shape=(1, 8, 8))
