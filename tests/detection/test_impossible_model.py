"""A received model with values no trained network holds is refused in one line (issue 22): a negative batch-norm
running variance or batch count (which silently made every output NaN: accuracy 0.100, "nothing observed"), and a
NaN/Inf weight, by load_received_model and by check_model_values, the check the audit can run on any model."""
import pytest
import torch

from fedleak.detection import ImpossibleModel, UnsafeModelFile, check_model_values, load_received_model, save_model_file
from fedleak.models import build_model


def _cnn():
    torch.manual_seed(0)
    return build_model("cnn", (1, 28, 28), 10, padding=2, norm="batch")


def _entry(model, leaf):
    return next(k for k in model.state_dict() if k.endswith(leaf))


@pytest.mark.parametrize("leaf, value, words", [
    ("running_var", -1.0, "is negative"),
    ("num_batches_tracked", -3, "is negative"),
    ("running_mean", float("nan"), "NaN/Inf"),
])
def test_impossible_buffers_in_a_received_file_are_refused_in_one_line(tmp_path, leaf, value, words):
    sent = _cnn()
    key = _entry(sent, leaf)
    with torch.no_grad():
        sent.state_dict()[key].view(-1)[0] = value
    path = save_model_file(sent, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as refused:
        load_received_model(path, _cnn())
    message = str(refused.value)
    assert "\n" not in message and key in message and words in message


def test_a_sound_model_loads_and_passes_the_value_check(tmp_path):
    sent = _cnn()
    sent.train()
    sent(torch.rand(4, 1, 28, 28))  # real batch statistics, counter 1
    loaded = load_received_model(save_model_file(sent, tmp_path / "model.safetensors"), _cnn())
    check_model_values(loaded)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), sent.state_dict().values()))


@pytest.mark.parametrize("leaf, value", [("weight", float("inf")), ("running_var", -0.5)])
def test_check_model_values_names_the_entry_of_an_impossible_model(leaf, value):
    model = _cnn()
    key = _entry(model, leaf)
    with torch.no_grad():
        model.state_dict()[key].view(-1)[-1] = value
    with pytest.raises(ImpossibleModel, match=key.replace(".", r"\.")) as refused:
        check_model_values(model, "--model net.py")
    assert isinstance(refused.value, UnsafeModelFile) and str(refused.value).startswith("--model net.py: ")
