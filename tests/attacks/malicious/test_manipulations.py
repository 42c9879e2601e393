"""The one attack registry: every manipulation builds from its options and runs end to end."""
import pytest
import torch

from fedleak.attacks import ATTACKS, MALICIOUS
from fedleak.attacks.base import AttackContext, Observed
from fedleak.fl.training import batch_gradients
from fedleak.metrics.extraction import match_extractions
from fedleak.models import build_model
from fedleak.registry import UnknownNameError


def test_registry_lists_every_manipulation_of_the_issue():
    assert list(MALICIOUS) == ["class_fishing", "curious_kernels", "decepticons", "feature_fishing",
                               "input_forwarding", "loki", "model_inconsistency", "pairs", "qbi", "robbing_the_fed",
                               "seer", "text_embedding", "trap_weights"]
    assert set(ATTACKS.names()) == {*MALICIOUS, "passive", "passive_text", "dager", "dlg", "idlg", "ig", "wiig", "dia",
                                    "dpia", "gpia", "vbia", "pig", "cdia", "fedavg_inversion", "spear"}
    with pytest.raises(UnknownNameError, match="valid attacks"):
        ATTACKS.get("no-such-attack")
    with pytest.raises(ValueError, match="attack 'trap_weights' has no option rate; its options: scale_factor"):
        ATTACKS.build("trap_weights", rate=2)


def test_looked_up_manipulation_runs_through_update_tensors_only():
    attack = ATTACKS.build("trap_weights", scale_factor=0.8)
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 8, 8), 4, widths=(400, 16))
    manipulated, secret = attack.prepare(model, AttackContext((1, 8, 8)))
    x = torch.randint(0, 256, (10, 1, 8, 8)).float() / 255
    update = batch_gradients(manipulated, x, torch.arange(10) % 4)
    observed = Observed({k: v.unsqueeze(0) for k, v in update.items()}, "gradient", (0,), (10,), (manipulated,))
    reconstruction = attack.reconstruct(observed, secret, None)  # only the update and the secret
    declared = reconstruction.inputs[reconstruction.declared]
    assert len(declared) >= 3 and match_extractions(declared, x).exact.all()
