import pickle

import pytest
import torch

from fedleak.attacks import prepare
from fedleak.detection import ArchitectureMismatch, UnsafeModelFile, load_received_model, save_model_file
from fedleak.models import build_model

from detection_data import SHAPE


class _Payload:
    """Unpickling this touches a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_round_trip_gives_the_sent_tensors(tmp_path, benign_cnn):
    path = save_model_file(benign_cnn, tmp_path / "model.safetensors")
    local = build_model("cnn", SHAPE, 10, padding=2)
    loaded = load_received_model(path, local)
    assert loaded is not local
    for key, value in benign_cnn.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize("writer, kind", [
    (lambda obj, path: torch.save(obj, path), "zip archive"),
    (lambda obj, path: path.write_bytes(pickle.dumps(obj)), "pickle"),
])
def test_pickled_files_are_refused_without_running_them(tmp_path, writer, kind):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.bin"
    writer({"weights": _Payload(marker)}, path)
    with pytest.raises(UnsafeModelFile, match=kind):
        load_received_model(path, build_model("cnn", SHAPE, 10, padding=2))
    assert not marker.exists()


def test_mismatched_file_names_the_offending_keys(tmp_path, benign_cnn):
    manipulated, _ = prepare("robbing_the_fed", benign_cnn, num_bins=16)
    path = save_model_file(manipulated, tmp_path / "evil.safetensors")
    with pytest.raises(ArchitectureMismatch, match="extra keys") as refused:
        load_received_model(path, build_model("cnn", SHAPE, 10, padding=2))
    assert set(refused.value.report.extra) == {"imprint.linear.weight", "imprint.linear.bias"}
    assert "imprint.linear.weight" in str(refused.value) and "imprint.linear.bias" in str(refused.value)

    path = save_model_file(build_model("cnn", SHAPE, 7, padding=2), tmp_path / "resized.safetensors")
    with pytest.raises(ArchitectureMismatch, match=r"classifier\.weight: \(7, 256\) instead of \(10, 256\)"):
        load_received_model(path, build_model("cnn", SHAPE, 10, padding=2))
