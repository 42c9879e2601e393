"""Combining defenses by name: parsing, errors, and what apply_defenses returns."""
import pytest
import torch

from fedleak.defenses import DEFENSES, DPSGD, DefenseSpec, apply_defenses, last_draws, parse_defenses
from fedleak.fl.client import ClientUpdate
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model
from fedleak.registry import UnknownNameError


def test_parse_list_with_parameters():
    specs = parse_defenses("dropout, dp:sigma=1e-3:clip=20,prune:p=0.9,cvb:K=adaptive")
    assert specs == [DefenseSpec("dropout"), DefenseSpec("dp", {"sigma": 1e-3, "clip": 20}),
                     DefenseSpec("prune", {"p": 0.9}), DefenseSpec("cvb", {"K": "adaptive"})]
    assert str(specs[1]) == "dp:sigma=0.001:clip=20"
    assert parse_defenses("none") == parse_defenses("") == parse_defenses(None) == []
    assert DEFENSES.names() == ["cvb", "dp", "dropout", "guard", "precode", "prune"]


@pytest.mark.parametrize("text,error,message", [
    ("dropout,noise", UnknownNameError, "unknown defense 'noise'; valid defenses: cvb, dp, dropout, guard, precode, prune"),
    ("dp:rate=2", ValueError, "defense 'dp' has no option rate; its options: sigma, clip, seed"),
    ("dp:sigma", ValueError, "option 'sigma' is not key=value"),
    ("prune,prune", ValueError, "listed twice"),
])
def test_parse_errors(text, error, message):
    with pytest.raises(error, match=message):
        parse_defenses(text)


def test_apply_all_four_to_the_cnn():
    torch.manual_seed(0)
    model = build_model("cnn", (1, 32, 32), 10)
    names = [n for n, _ in model.named_parameters()]
    defended, gradient_fn, mods = apply_defenses(model, "dropout,dp,prune,cvb", model_name="cnn",
                                                 input_shape=(1, 32, 32))
    assert [n for n, _ in model.named_parameters()] == names  # the given model is left as it was
    defended_names = [n for n, _ in defended.named_parameters()]
    assert set(names) <= set(defended_names)  # attacks still find every layer by its name
    assert {n for n in defended_names if n not in names} == {
        "cvb.mu_encoder.weight", "cvb.std_encoder.weight", "cvb.decoder.weight"}
    assert isinstance(gradient_fn, DPSGD) and (gradient_fn.sigma, gradient_fn.clip) == (1e-4, 20.0)
    assert len(mods) == 1
    x, y = torch.rand(2, 1, 32, 32), torch.tensor([1, 2])
    assert set(gradient_fn(defended.train(), x, y)) == set(defended_names)


def test_no_defense_keeps_the_standard_gradient():
    model = build_model("cnn", (1, 32, 32), 10)
    defended, gradient_fn, mods = apply_defenses(model, None, model_name="cnn", input_shape=(1, 32, 32))
    assert gradient_fn is batch_gradients and mods == ()
    assert str(defended) == str(model)


def test_probing_leaves_no_draws_behind():
    model = build_model("cnn", (1, 32, 32), 10)
    defended, _, _ = apply_defenses(model, "precode,cvb", model_name="cnn", input_shape=(1, 32, 32))
    assert last_draws(defended) == {} and defended.cvb.mu is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_defended_training_on_cuda():
    model = build_model("cnn", (1, 32, 32), 10).cuda()
    defended, gradient_fn, mods = apply_defenses(model, "dropout,dp:seed=1,prune,cvb", model_name="cnn",
                                                 input_shape=(1, 32, 32))
    x, y = torch.rand(4, 1, 32, 32, device="cuda"), torch.tensor([0, 1, 2, 3], device="cuda")
    grads = gradient_fn(defended.train(), x, y)
    assert all(g.is_cuda for g in grads.values()) and all(d.is_cuda for d in last_draws(defended).values())
    pruned = mods[0](defended, None, lambda m: ClientUpdate(0, 1, "gradient", grads, 4))
    assert all(t.is_cuda for t in pruned.tensors.values())


@pytest.mark.parametrize("text,message", [
    ("dp:sigma=inf", "dp option sigma must be a finite number >= 0, got inf"),
    ("dp:sigma=nan", "dp option sigma must be a finite number >= 0, got nan"),
    ("dp:clip=-1", "dp option clip must be a finite number > 0, got -1"),
    ("dp:seed=1.5", "dp option seed must be an integer >= 0"),
    ("dropout:p=nan", "dropout rate p must be a finite number >= 0 and < 1"),
    ("prune:p=inf", "pruning rate p must be a finite number >= 0 and <= 1"),
    ("precode:beta=inf", "precode option beta must be a finite number >= 0"),
    ("precode:K=0", "precode option K must be an integer >= 1"),
    ("cvb:beta=nan", "cvb option beta"),
    ("cvb:kernel_size=0", "cvb option kernel_size"),
    ("cvb:K=-3", "cvb option K"),
])
def test_non_finite_or_out_of_range_options_are_refused_before_training(text, message):
    model = build_model("cnn", (1, 32, 32), 10)
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        apply_defenses(model, text, model_name="cnn", input_shape=(1, 32, 32))
