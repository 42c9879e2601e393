"""The audit's defenses per model (issue 20): a BatchNorm model gets DP-SGD with GroupNorm in place of its
BatchNorm, so every default defense places on the zoo's batch-norm models; a model without batch norm and a
user's own choice are left as they are."""
from pathlib import Path

import pytest
import torch.nn as nn

from fedleak.audit.config import BATCHNORM_DP, DEFAULT_DEFENSES, AuditConfig, default_defenses
from fedleak.audit.inputs import resolve_model
from fedleak.defenses import apply_defenses
from ordinary_zoo import ZOO as MODELS  # benchmarks/ is on the path (tests/conftest.py)

ZOO = Path(__file__).resolve().parents[2] / "benchmarks" / "ordinary_zoo.py"
SHAPE, CLASSES = (1, 32, 32), 10


def _resolved(name):
    return resolve_model(f"{ZOO}:{MODELS[name].__name__}", SHAPE, CLASSES)


def _model(name):
    return _resolved(name).model


@pytest.mark.parametrize("name", ["batchnorm_cnn", "mobilenet_v2", "resnet"])
def test_batchnorm_models_get_groupnorm_dp_and_every_default_places(name):
    model = _model(name)
    config = default_defenses(AuditConfig(model=name, data="bundled"), model)
    assert config.defenses == (BATCHNORM_DP, "cvb")
    for defense in config.defenses:  # raises ValueError (the not-applicable signal) if it cannot be placed
        resolved = _resolved(name)
        defended = apply_defenses(resolved.model, defense, model_name=resolved.name, input_shape=SHAPE)[0]
        if defense == BATCHNORM_DP:
            assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in defended.modules())


def test_others_keep_their_defenses():
    assert default_defenses(AuditConfig(model="mlp", data="bundled"), _model("mlp")).defenses == DEFAULT_DEFENSES
    chosen = AuditConfig(model="resnet", data="bundled", defenses=("dp:sigma=1e-2",))
    assert default_defenses(chosen, _model("resnet")).defenses == ("dp:sigma=1e-2",)
