import copy
import math

import pytest
import torch
import torch.nn as nn

from fedleak.attacks import prepare
from fedleak.detection import WarmupZScore, build_detector
from fedleak.detection.monitored import find_targets
from fedleak.detection.warmup_zscore import WarmupProfile, zscores
from fedleak.fl import FederationSpec, FLConfig, build_federation
from fedleak.models import build_model

from detection_data import SHAPE

MODELS = {
    "cnn": ("cnn", {"padding": 2}),
    "resnet18-bn": ("resnet18", {"width": 2}),
    "resnet18-gn": ("resnet18", {"width": 2, "norm": "group"}),
    "vit": ("vit_small", {"width": 16, "heads": 2, "depth": 2, "patch": 4}),
}
EXPECTED = {
    "cnn": {"conv[0]": "block1.conv", "linear[0]": "classifier"},
    "resnet18-bn": {"conv[0]": "stem.conv", "linear[0]": "classifier", "batchnorm[0]": "stem.norm",
                    "batchnorm[1]": "layer1.0.norm1", "batchnorm[2]": "layer1.0.norm2"},
    "resnet18-gn": {"conv[0]": "stem.conv", "linear[0]": "classifier"},
    "vit": {"conv[0]": "embed.proj", "linear[0]": "blocks.0.attn.qkv", "linear[-1]": "classifier",
            "attention[0]": "blocks.0.attn", "attention[-1]": "blocks.1.attn"},
}


@pytest.mark.parametrize("key", list(MODELS))
def test_same_detector_runs_unchanged_on_every_architecture(key, batch16):
    name, options = MODELS[key]
    torch.manual_seed(0)
    model = build_model(name, SHAPE, 10, **options)
    targets = {t.label: t.module for t in find_targets(model, batch16[0][:2])}
    assert targets == EXPECTED[key]
    verdict = WarmupZScore(samples=32)(model, model, [batch16])
    assert verdict.detector == "warmup_zscore" and verdict.seconds > 0
    assert math.isfinite(verdict.score) and not verdict.flagged, (verdict.layer, verdict.statistic, verdict.score)
    zs = torch.tensor(verdict.details["zscores"])
    assert zs.shape == (5, len(verdict.details["series"]), 3)
    if key == "resnet18-bn":
        assert {"batchnorm[0]_activation", "batchnorm[2]_activation"} <= set(verdict.details["series"])


def test_multihead_attention_is_found_by_type():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.mixer = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = self.embed(x)
            return self.head(self.mixer(h, h, h)[0].mean(1))

    targets = {t.label: t.module for t in find_targets(Tiny(), torch.randn(2, 5, 4))}
    assert targets == {"linear[0]": "embed", "linear[-1]": "head", "attention[0]": "mixer"}


def test_zscore_of_a_straight_drift_is_the_closed_form():
    steps = torch.arange(6.0)
    values = (1.0 + 0.1 * steps)[:, None, None].expand(6, 1, 3).clone()
    profile = WarmupProfile(["x"], values, torch.ones(1), [])
    z = zscores(profile, relative_floor=1e-6)
    for t in range(2, 6):  # |s_t - mean(s_<t)| / std(s_<t) = sqrt(3 (t + 1) / (t - 1)) for a line
        assert z[t - 1, 0, 1].item() == pytest.approx(math.sqrt(3 * (t + 1) / (t - 1)), rel=1e-4)
    # the first step has one history value: its spread is the floor, ε times the statistic's size
    assert z[0, 0, 1].item() == pytest.approx(0.1 / (1e-6 * 1.0), rel=1e-4)


def test_feature_fishing_is_flagged_at_the_last_layer_and_benign_passes(benign_cnn, batch16):
    fishing, _ = prepare("feature_fishing", benign_cnn, feature=3, threshold=0.5)
    detector = build_detector("warmup_zscore")
    benign = detector(benign_cnn, benign_cnn, [batch16])
    assert not benign.flagged, (benign.layer, benign.statistic, benign.score)
    verdict = detector(fishing, benign_cnn, [batch16])
    assert verdict.flagged and verdict.score > 10 * benign.score
    assert verdict.layer in verdict.details["series"] and verdict.statistic in ("mean", "std", "max")


def test_round_memory_catches_trap_weights_after_benign_rounds(batch16):
    config = FLConfig(algorithm="fedsgd", num_clients=2, rounds=3, batch_size=64, seed=0)  # as the demo step
    server = build_federation(FederationSpec(dataset="bundled", model="fcnn", size=(16, 16),
                                             model_options={"widths": (64, 32)}), config, progress=False)
    detector = WarmupZScore(samples=64, remember_rounds=5)
    for r in range(1, 4):
        verdict = detector(copy.deepcopy(server.model), None, [batch16])
        assert not verdict.flagged, (r, verdict.layer, verdict.statistic, verdict.score)
        server.run_round(r)
    assert len(detector.rounds) == 3
    trapped, _ = prepare("trap_weights", server.model)
    verdict = detector(trapped, None, [batch16])
    assert verdict.flagged and verdict.details["step"] == 0 and verdict.layer.startswith("linear[0]"), verdict.score
    paper_only = WarmupZScore(samples=64)(trapped, None, [batch16])
    assert verdict.score > 10 * paper_only.score  # the static trap is invisible within one warm-up
    assert len(detector.rounds) == 3  # the refused model is not remembered


def test_all_zero_and_constant_layers_get_finite_defined_scores_not_a_tiny_floor(benign_cnn, batch16):
    zero_head = copy.deepcopy(benign_cnn)  # a zero-initialised classifier: no size to measure a relative change
    nn.init.zeros_(zero_head.classifier.weight)
    nn.init.zeros_(zero_head.classifier.bias)
    verdict = build_detector("warmup_zscore")(zero_head, zero_head, [batch16])
    assert verdict.details["unscaled"] == ["linear[0]_weight", "linear[0]_bias"]
    assert not verdict.flagged and math.isfinite(verdict.score) and verdict.score < 100, verdict.score
    # a manipulated model with the same zero start is still caught
    fishing, _ = prepare("feature_fishing", zero_head, feature=3, threshold=0.5)
    assert build_detector("warmup_zscore")(fishing, zero_head, [batch16]).flagged

    all_zero = build_model("fcnn", SHAPE, 10, widths=(32,))
    for param in all_zero.parameters():
        nn.init.zeros_(param)
    verdict = WarmupZScore(samples=32)(all_zero, all_zero, [batch16])  # was flagged with a score of 1e35
    assert set(verdict.details["unscaled"]) == set(verdict.details["series"])
    assert not verdict.flagged and verdict.score < 100, (verdict.layer, verdict.score)

    torch.manual_seed(0)
    constant_bias = build_model("fcnn", SHAPE, 10, widths=(32,))  # the std of a constant is rounding noise
    for name, param in constant_bias.named_parameters():
        if name.endswith("bias"):
            nn.init.constant_(param, 0.1)
    verdict = WarmupZScore(samples=32)(constant_bias, constant_bias, [batch16])  # was flagged with 4e7
    assert not verdict.flagged and verdict.score < 100 and verdict.details["unscaled"] == [], verdict.score
