"""The manipulation registry: every entry's config builds and its manipulation runs end to end."""
import pytest
import torch

from fedleak.attacks.malicious import MANIPULATIONS
from fedleak.fl.training import batch_gradients
from fedleak.metrics.extraction import match_extractions
from fedleak.models import build_model
from fedleak.registry import UnknownNameError


def test_registry_lists_every_manipulation_of_the_issue():
    assert MANIPULATIONS.names() == ["class_fishing", "curious_kernels", "decepticons", "feature_fishing",
                                     "input_forwarding", "robbing_the_fed", "text_embedding", "trap_weights"]
    with pytest.raises(UnknownNameError, match="valid manipulations"):
        MANIPULATIONS.get("loki")


def test_looked_up_manipulation_runs_through_update_tensors_only():
    entry = MANIPULATIONS.get("trap_weights")
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 8, 8), 4, widths=(400, 16))
    manipulated, secret = entry.manipulate(model, entry.config((1, 8, 8), scale_factor=0.8))
    x = torch.randint(0, 256, (10, 1, 8, 8)).float() / 255
    update = batch_gradients(manipulated, x, torch.arange(10) % 4)
    reconstruction = entry.extract(update, secret)  # only the update and the secret
    declared = reconstruction.inputs[reconstruction.individual]
    assert len(declared) >= 3 and match_extractions(declared, x).exact.all()
