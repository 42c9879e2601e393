"""Class and feature fishing on the last layer (Wen et al.; paper 000 App. A.1.3)."""
import torch

from fedleak.attacks.malicious.fishing import (ClassFishingConfig, FeatureFishingConfig, class_fishing,
                                               extract_fishing, feature_fishing, fishing_bin)
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.metrics.extraction import match_extractions
from fedleak.models import build_model

SHAPE = (1, 28, 28)


def test_class_fishing_isolates_the_one_image_of_the_target_class():
    data = load_dataset("bundled")
    generator = torch.Generator().manual_seed(0)
    others = torch.nonzero(data.y != 3).squeeze(1)
    index = torch.cat([others[torch.randperm(len(others), generator=generator)[:63]],
                       torch.nonzero(data.y == 3)[:1, 0]])
    x, y = data[index]
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 10, widths=(300, 32))
    fished, secret = class_fishing(model, ClassFishingConfig(3, input_shape=SHAPE))
    result = extract_fishing(batch_gradients(fished, x, y), secret)
    recovered = result.declared_points()
    assert len(recovered) == 1  # every active row holds the same single image
    match = match_extractions(recovered, x)
    assert match.sample.item() == 63 and match.exact.item()
    with torch.no_grad():
        features = model[:-1](x[-1:])[0]
    assert torch.allclose(result.info['features'], features, atol=1e-5)  # its classifier input as well


def test_feature_fishing_bin_recovers_an_image_whatever_its_label():
    data, public = load_dataset("bundled"), load_dataset("bundled", split="test")
    x, y = data[torch.arange(32)]
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 10, widths=(300, 32))
    with torch.no_grad():
        public_features = model[:-1](public.inputs(slice(None)))
    feature = int(public_features.var(dim=0).argmax())
    edges = torch.quantile(public_features[:, feature], torch.tensor([0.80, 0.84, 0.88, 0.92, 0.96]))
    found = 0
    for low, high in zip(edges[:-1].tolist(), edges[1:].tolist()):
        low_model, secret = feature_fishing(model, FeatureFishingConfig(feature, low, input_shape=SHAPE))
        high_model, _ = feature_fishing(model, FeatureFishingConfig(feature, high, input_shape=SHAPE))
        update = fishing_bin(batch_gradients(low_model, x, y), batch_gradients(high_model, x, y))
        result = extract_fishing(update, secret)
        match = match_extractions(result.declared_points(), x)
        found += int(match.exact.sum())
        assert match.exact.all()
    assert found >= 1
