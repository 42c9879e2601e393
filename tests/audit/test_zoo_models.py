"""The audit zoo's ordinary models (benchmarks/ordinary_zoo.py) pass the audit's input checks on their data,
as `fedleak audit --model benchmarks/ordinary_zoo.py:NAME` builds them; and the checks refuse one of them fed
the other kind of data."""
from pathlib import Path

import pytest

from fedleak.audit.checks import InputError, check_model
from fedleak.audit.inputs import resolve_data, resolve_model
from ordinary_zoo import IMAGE, ZOO as MODELS  # benchmarks/ is on the path (tests/conftest.py)

ZOO = Path(__file__).resolve().parents[2] / "benchmarks" / "ordinary_zoo.py"


@pytest.fixture(scope="module")
def bundled():
    return resolve_data("bundled", size=(32, 32))[0]


@pytest.mark.parametrize("name", IMAGE)
def test_zoo_image_model_passes_the_checks(bundled, name):
    resolved = resolve_model(f"{ZOO}:{MODELS[name].__name__}", bundled.info.input_shape, bundled.info.num_classes)
    check_model(resolved.model, bundled, what=name)


def test_zoo_text_model_passes_the_checks_and_refuses_images(bundled):
    fortunes = resolve_data("fortunes")[0]
    resolved = resolve_model(f"{ZOO}:TextClassifier", fortunes.info.input_shape, fortunes.info.num_classes)
    check_model(resolved.model, fortunes, what="text")
    with pytest.raises(InputError, match="cannot read the data"):
        check_model(resolved.model, bundled, what="text")
