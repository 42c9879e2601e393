"""Robbing the Fed's imprint layer (Fowl et al.; paper 000 App. A.1.1), inserted and reused."""
import pytest
import torch

from fedleak.attacks.malicious.robbing_the_fed import RobbingConfig, brightness_prior, extract_imprint, robbing_the_fed
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.cases.scoring import score
from fedleak.metrics.extraction import match_extractions
from fedleak.models import build_model

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def batch_and_prior():
    train, public = load_dataset("bundled"), load_dataset("bundled", split="test")
    mean, std = brightness_prior(public.inputs(slice(None)))  # the server's estimate from public data
    x, y = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(2))[:64]]
    return x, y, mean, std


@pytest.mark.parametrize("model_name, options", [("fcnn", {"widths": (200, 32)}), ("cnn", {"padding": 2})])
def test_inserted_imprint_recovers_images_of_a_batch_exactly(batch_and_prior, model_name, options):
    x, y, mean, std = batch_and_prior
    torch.manual_seed(0)
    model = build_model(model_name, SHAPE, 10, **options)
    robbed, secret = robbing_the_fed(model, RobbingConfig(SHAPE, num_bins=256, feature_mean=mean, feature_std=std))
    update = batch_gradients(robbed, x, y)
    reconstruction = extract_imprint(update, secret)
    assert score(reconstruction, x)["R"] >= 0.3  # many of the 64 images fall alone into one of 256 bins
    declared = reconstruction.inputs[reconstruction.declared]
    assert len(declared) >= 1 and match_extractions(declared, x).exact.all()


def test_inserted_layer_is_an_architecture_change_that_strict_loading_rejects(batch_and_prior):
    _, _, mean, std = batch_and_prior
    model = build_model("fcnn", SHAPE, 10, widths=(100, 10))
    robbed, _ = robbing_the_fed(model, RobbingConfig(SHAPE, feature_mean=mean, feature_std=std))
    extra = set(robbed.state_dict()) - set(model.state_dict())
    assert extra == {"imprint.linear.weight", "imprint.linear.bias"}
    with pytest.raises(RuntimeError, match="Unexpected key"):
        build_model("fcnn", SHAPE, 10, widths=(100, 10)).load_state_dict(robbed.state_dict())


def test_reused_first_layer_keeps_the_architecture_and_still_extracts(batch_and_prior):
    x, y, mean, std = batch_and_prior
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 10, widths=(500, 32))
    robbed, secret = robbing_the_fed(model, RobbingConfig(SHAPE, feature_mean=mean, feature_std=std, variant="reuse"))
    assert set(robbed.state_dict()) == set(model.state_dict())
    reconstruction = extract_imprint(batch_gradients(robbed, x, y), secret)
    declared = reconstruction.inputs[reconstruction.declared]
    match = match_extractions(declared, x)
    assert match.exact.all() and len(match.sample.unique()) >= 20
    with pytest.raises(ValueError, match="reads the input"):
        robbing_the_fed(build_model("cnn", SHAPE, 10, padding=2), RobbingConfig(SHAPE, variant="reuse"))
