"""Non-finite received updates and non-finite or out-of-range attack options end in a clear error (issue 13),
never in a result computed from them."""
import math

import pytest
import torch

from fedleak.attacks.base import Knowledge
from fedleak.attacks.analytic import extract_at_layer
from fedleak.attacks.inversion import InversionConfig, invert
from fedleak.attacks.inversion.presets import PRESETS
from fedleak.cases.victims import victim_case
from fedleak.attacks.malicious.curious_kernels import CuriousKernelsConfig
from fedleak.attacks.malicious.decepticons import DecepticonsConfig
from fedleak.attacks.malicious.fishing import ClassFishingConfig, FeatureFishingConfig
from fedleak.attacks.malicious.forwarding import InputForwardingConfig
from fedleak.attacks.malicious.robbing_the_fed import RobbingConfig
from fedleak.attacks.malicious.text_embedding import TextEmbeddingConfig
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.checks import NonFiniteUpdate
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

SHAPE = (1, 8, 8)


def test_trap_extraction_refuses_an_update_with_one_nan_bias_entry():
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 4, widths=(32, 8))
    trapped, secret = trap_weights(model, TrapWeightsConfig(SHAPE, seed=0))
    x = torch.rand(4, *SHAPE)
    grads = batch_gradients(trapped, x, torch.arange(4))
    assert len(extract_at_layer(grads, secret).inputs) > 0  # finite: it extracts
    grads[f"{secret.layer}.bias"][3] = math.nan
    with pytest.raises(NonFiniteUpdate, match=rf"'{secret.layer}.bias' holds 1 NaN/Inf entries of 32"):
        extract_at_layer(grads, secret)


@pytest.mark.parametrize("poison", ["one", "all"])
def test_inversion_refuses_non_finite_gradients(poison):
    torch.manual_seed(0)
    model = build_model("fcnn", SHAPE, 4, widths=(16,))
    case = victim_case(model, "fcnn", "", torch.rand(2, *SHAPE), torch.tensor([1, 3]))
    quick = PRESETS["idlg"].with_(max_iterations=2)
    assert invert(quick, case.observed, case.knowledge) is not None
    grads = {n: g.clone() for n, g in case.observed.updates.items()}
    name = next(iter(grads))
    if poison == "one":
        grads[name].view(-1)[5] = math.inf
    else:
        grads = {n: torch.full_like(g, math.nan) for n, g in grads.items()}
    with pytest.raises(NonFiniteUpdate, match=f"observed gradients: '{name}' holds"):
        invert(quick, case.observed, case.knowledge, gradients=grads)


@pytest.mark.parametrize("build, message", [
    (lambda: TrapWeightsConfig(SHAPE, scale_factor=math.nan), "trap weights scaling factor s"),
    (lambda: TrapWeightsConfig(SHAPE, std=math.inf), "trap weights std"),
    (lambda: TrapWeightsConfig(SHAPE, levels=0), "trap weights levels"),
    (lambda: InputForwardingConfig(SHAPE, seed=-1), "input forwarding seed"),
    (lambda: CuriousKernelsConfig(SHAPE, scale=math.inf), "curious kernels' centre value scale"),
    (lambda: DecepticonsConfig(tokens_per_update=0), "Decepticons tokens_per_update"),
    (lambda: DecepticonsConfig(tokens_per_update=4, gain=math.nan), "Decepticons gain"),
    (lambda: ClassFishingConfig(target_class=-1), "class fishing target_class"),
    (lambda: FeatureFishingConfig(feature=0, threshold=math.nan), "feature fishing threshold"),
    (lambda: RobbingConfig(SHAPE, feature_std=math.inf), "imprint feature_std"),
    (lambda: RobbingConfig(SHAPE, num_bins=2.5), "imprint num_bins"),
    (lambda: TextEmbeddingConfig(seq_len=8, scale_factor=math.nan), "text embedding scale_factor"),
    (lambda: InversionConfig(lr=math.inf), "inversion lr"),
    (lambda: InversionConfig(tv_weight=math.nan), "inversion tv_weight"),
    (lambda: InversionConfig(max_iterations=1.5), "inversion max_iterations"),
    (lambda: Knowledge(SHAPE, dp_sigma=math.nan), "dp_sigma"),
    (lambda: Knowledge(SHAPE, input_range=(0.0, math.inf)), "input_range high"),
])
def test_non_finite_or_out_of_range_attack_options_are_refused(build, message):
    with pytest.raises(ValueError, match=f"^{message} must be"):
        build()
