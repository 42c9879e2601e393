import json
import pickle
import tempfile
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedleak.attacks import prepare
from fedleak.detection import safe_load
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


def _header_and_data(path):
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _write(path, header, data=b"", *, length_low_byte=None):
    """A safetensors file with ``header`` (padded with metadata so that its length's first byte is
    ``length_low_byte`` when given) followed by ``data``."""
    text = json.dumps(header).encode()
    if length_low_byte is not None:
        header = {**header, "__metadata__": {"pad": ""}}
        base = len(json.dumps(header).encode())
        header["__metadata__"]["pad"] = " " * ((length_low_byte - base) % 256 + 256)
        text = json.dumps(header).encode()
        assert len(text) % 256 == length_low_byte
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def test_an_extra_huge_tensor_is_refused_by_header_before_reading_data(tmp_path, monkeypatch):
    local = nn.Linear(3, 2)
    header, data = _header_and_data(save_model_file(local, tmp_path / "ok.safetensors"))
    end = len(data)
    header["imprint.weight"] = {"dtype": "F32", "shape": [2 ** 19, 2 ** 10], "data_offsets": [end, end + 2 ** 31]}
    path = _write(tmp_path / "evil.safetensors", header, data)
    with path.open("r+b") as handle:  # a sparse 2 GiB file: no disk or memory spent
        handle.truncate(path.stat().st_size + 2 ** 31)
    monkeypatch.setattr(safe_load, "load_file", lambda *a, **k: pytest.fail("tensor data was read"))
    start = time.perf_counter()
    with pytest.raises(ArchitectureMismatch, match=r"extra keys \['imprint.weight'\]"):
        load_received_model(path, local)
    assert time.perf_counter() - start < 1.0


def test_declared_sizes_beyond_the_local_architecture_are_refused(tmp_path):
    local = nn.Linear(3, 2)
    header, data = _header_and_data(save_model_file(local, tmp_path / "ok.safetensors"))
    first = min(header, key=lambda k: header[k]["data_offsets"][0] if k != "__metadata__" else 1 << 60)
    header[first]["data_offsets"][1] += 2 ** 30
    with pytest.raises(UnsafeModelFile, match=f"'{first}' declares {2 ** 30 + 8}"):
        load_received_model(_write(tmp_path / "big.safetensors", header, data), local)
    with pytest.raises(UnsafeModelFile, match="header declares .* more than"):
        load_received_model(_write(tmp_path / "pad.safetensors", {"__metadata__": {"x": "y" * 10 ** 6}}), local)


def test_truncated_file_and_directory_say_what_is_wrong(tmp_path):
    local = nn.Linear(3, 2)
    header, data = _header_and_data(save_model_file(local, tmp_path / "ok.safetensors"))
    path = _write(tmp_path / "cut.safetensors", header, data, length_low_byte=0x80)
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(load_received_model(path, local).weight, local.weight)  # whole: it loads
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UnsafeModelFile, match="truncated") as refused:
        load_received_model(path, local)
    assert "pickle" not in str(refused.value)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UnsafeModelFile, match="truncated safetensors file"):
        load_received_model(path, local)
    with pytest.raises(UnsafeModelFile, match="is a directory"):
        load_received_model(tmp_path, local)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_received_model(tmp_path / "missing.safetensors", local)


@pytest.fixture()
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a received file was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


_LOCAL = nn.Linear(3, 2)
_VALID = None


def _valid_bytes():
    global _VALID
    if _VALID is None:
        with tempfile.TemporaryDirectory() as folder:
            _VALID = save_model_file(_LOCAL, Path(folder) / "m.safetensors").read_bytes()
    return _VALID


def _refused_clearly(tmp_path, content: bytes):
    path = tmp_path / "received.safetensors"
    path.write_bytes(content)
    try:
        model = load_received_model(path, _LOCAL)
    except (UnsafeModelFile, ArchitectureMismatch) as error:
        assert str(path) in str(error) or isinstance(error, ArchitectureMismatch)
        return
    for key, value in model.state_dict().items():  # accepted: then it is a whole, finite, matching model
        assert value.shape == _LOCAL.state_dict()[key].shape and torch.isfinite(value).all()


_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(content=st.binary(max_size=400))
def test_random_bytes_are_refused_clearly(tmp_path, no_unpickling, content):
    _refused_clearly(tmp_path, content)


@_PROPERTY
@given(cut=st.integers(min_value=0, max_value=10 ** 4))
def test_truncations_are_refused_clearly(tmp_path, no_unpickling, cut):
    valid = _valid_bytes()
    content = valid[:cut % len(valid)]
    path = tmp_path / "received.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnsafeModelFile):
        load_received_model(path, _LOCAL)


@_PROPERTY
@given(position=st.integers(min_value=0, max_value=10 ** 4), value=st.integers(min_value=0, max_value=255))
def test_mutated_headers_are_refused_clearly(tmp_path, no_unpickling, position, value):
    valid = bytearray(_valid_bytes())
    header_end = 8 + int.from_bytes(valid[:8], "little")
    valid[position % header_end] = value
    _refused_clearly(tmp_path, bytes(valid))
