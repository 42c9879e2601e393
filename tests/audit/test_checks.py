"""The audit's checks before any work (issues 20, 22): a model that cannot read the data, answers with the wrong
number of classes or holds impossible weights is refused with one line naming the fix, and nothing is written."""
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from fedleak.cli import main

MODEL = textwrap.dedent("""
    import torch.nn as nn
    import torch.nn.functional as F


    class Net(nn.Module):
        def __init__(self, channels, outputs):
            super().__init__()
            self.conv = nn.Conv2d(channels, 4, 3, padding=1)
            self.norm = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, outputs)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.norm(self.conv(x))), 4)
            return self.fc(x.flatten(1))


    def make(input_shape, num_classes, outputs=None, channels=None):
        return Net(channels or input_shape[0], outputs or num_classes)
""")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "checked_model.py"
    path.write_text(MODEL)
    return path


def _refused(capsys, out, *argv) -> str:
    assert main(["audit", "--data", "bundled", "--quick", "--out", str(out), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error  # one line, no traceback
    assert not out.exists()  # checked before --out is touched: the corrected command may use it
    return error


@pytest.mark.parametrize("outputs, words", [(5, "5 outputs per sample but the data has 10 classes (too few)"),
                                            (1000, "1000 outputs per sample but the data has 10 classes (too many)")])
def test_wrong_output_width_is_refused(tmp_path, capsys, model_file, outputs, words):
    error = _refused(capsys, tmp_path / "out", "--model", f"{model_file}:make:outputs={outputs}")
    assert words in error and "nn.Linear(..., 10)" in error


def test_a_model_for_other_channels_is_refused(tmp_path, capsys, model_file):
    error = _refused(capsys, tmp_path / "out", "--model", f"{model_file}:make:channels=3")
    assert "cannot read the data" in error and "(4, 1, 32, 32)" in error and "1 channel(s)" in error


@pytest.mark.parametrize("tensor, value, words", [("conv.weight", float("nan"), "NaN"),
                                                  ("norm.running_var", -1.0, "is negative")])
def test_impossible_weights_are_refused(tmp_path, capsys, model_file, tensor, value, words):
    import importlib.util
    spec = importlib.util.spec_from_file_location("checked_model_weights", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = {k: v.clone() for k, v in module.make((1, 32, 32), 10).state_dict().items()}
    state[tensor].view(-1)[0] = value
    weights = tmp_path / "weights.safetensors"
    save_file(state, str(weights))
    error = _refused(capsys, tmp_path / "out", "--model", f"{model_file}:make", "--weights", str(weights))
    assert words in error and tensor in error


def test_a_model_that_reads_the_data_passes_the_checks(tmp_path, model_file):
    from fedleak.audit.checks import check_model
    from fedleak.audit.inputs import resolve_data, resolve_model

    train, _ = resolve_data("bundled", size=(32, 32))
    resolved = resolve_model(f"{model_file}:make", train.info.input_shape, train.info.num_classes)
    before = {k: v.clone() for k, v in resolved.model.state_dict().items()}
    check_model(resolved.model, train, what="model")
    after = resolved.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the probe leaves the running statistics alone
    assert resolved.model.training


@pytest.mark.parametrize("source, words", [("import torch\nraise RuntimeError('no GPU here')\n",
                                            "importing"),
                                           ("def make(input_shape, num_classes):\n    return 1 / 0\n",
                                            "calling it with input_shape=(1, 32, 32), num_classes=10 raised")])
def test_a_model_file_that_raises_is_one_line(tmp_path, capsys, source, words):
    path = tmp_path / "raising_model.py"
    path.write_text(source)
    error = _refused(capsys, tmp_path / "out", "--model", f"{path}:make")
    assert words in error and "raising_model.py line" in error


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    from pathlib import Path

    import fedleak.report.results as results

    real = Path.write_text

    def full(self, text, *args, **kwargs):
        if self.name == ".report.html.tmp":
            real(self, text[:1000])  # part of the page written, then the disk is full
            raise OSError(28, "No space left on device", str(self))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(results.Path, "write_text", full)
    model = tmp_path / "fc.py"
    model.write_text("import torch.nn as nn\n\ndef make(input_shape, num_classes):\n"
                     "    return nn.Sequential(nn.Flatten(), nn.Linear(1024, 32), nn.ReLU(), nn.Linear(32, num_classes))\n")
    out = tmp_path / "out"
    assert main(["audit", "--model", f"{model}:make", "--data", "bundled", "--quick", "--attacks", "passive",
                 "--victims", "1", "--defense", "none", "--utility-rounds", "1", "--utility-clients", "2",
                 "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()  # the progress bar, then one line
    assert "Traceback" not in error and error.splitlines()[-1].startswith("fedleak audit: error writing ")
    assert "No space left on device" in error.splitlines()[-1]
    assert "report.html" in error.splitlines()[-1]
    assert not list(out.glob(".*.tmp"))
