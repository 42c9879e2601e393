import pytest
import torch

from fedleak.models import MODELS, build_model
from fedleak.registry import UnknownNameError

ALL = ["cnn", "embedding_lm", "fcnn", "hf", "imdb_fc", "resnet18", "text_transformer", "vgg_cnn", "vit_small"]


def test_every_model_is_registered():
    assert MODELS.names() == ALL


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as error:
        build_model("lenet", (1, 28, 28), 10)
    assert str(error.value) == f"unknown model 'lenet'; valid models: {', '.join(ALL)}"


def test_unknown_option_lists_the_models_options():
    with pytest.raises(ValueError, match="model 'resnet18' has no option depth; its options: norm, width"):
        build_model("resnet18", (3, 32, 32), 10, depth=3)


@pytest.mark.parametrize("shape", ["32", (3, 0, 32), (3, 32.0, 32), ()])
def test_bad_input_shape_is_refused(shape):
    with pytest.raises(ValueError, match="cnn: input_shape must"):
        build_model("cnn", shape, 10)


def test_bad_num_classes_is_refused():
    with pytest.raises(ValueError, match="cnn: num_classes must be a positive int, got 0"):
        build_model("cnn", (3, 32, 32), 0)


def test_shape_and_classes_are_recorded_and_device_is_honoured():
    model = build_model("cnn", torch.Size([3, 32, 32]), 10, device="cpu")
    assert model.input_shape == (3, 32, 32) and model.num_classes == 10
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,shape,options", [
    ("cnn", (3, 32, 32), {}), ("fcnn", (1, 28, 28), {"widths": (32,)}),
    ("vgg_cnn", (3, 32, 32), {"channels": (4, 8, 8), "hidden": 16}),
    ("resnet18", (3, 32, 32), {"norm": "group", "width": 8}), ("vit_small", (3, 32, 32), {"depth": 2}),
    ("imdb_fc", (16,), {"vocab_size": 40, "embed_dim": 4, "hidden": 8}),
    ("text_transformer", (16,), {"vocab_size": 40})])
def test_models_run_on_cuda(name, shape, options):
    model = build_model(name, shape, 3, device="cuda", **options)
    x = torch.randint(0, 40, (2, *shape), device="cuda") if len(shape) == 1 else torch.randn(2, *shape, device="cuda")
    model(x).sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in model.parameters())
