"""Hostile and broken data files end in a :class:`DataFormatError` naming the file (issue 13), never a raw
numpy/PIL error; property tests feed random bytes, truncations and header mutations of valid files."""
import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fedleak.data import DataFormatError
from fedleak.data.cifar import read_batch
from fedleak.data.idx import read_idx
from fedleak.data.image_folder import read_image

_PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _idx(shape, data=b"", type_code=0x08):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + data


def _png(width=4, height=3) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(width * height * 3, dtype=np.uint8).reshape(height, width, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with its IHDR chunk declaring ``width`` x ``height`` (CRC recomputed)."""
    start = 8 + 8  # signature, then the IHDR chunk's length and type
    body = struct.pack(">II", width, height) + png[start + 8:start + 13]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return png[:start] + body + crc + png[start + 17:]


def test_idx_dims_whose_product_overflows_are_refused(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(_idx((2 ** 31, 2 ** 31, 4)))
    with pytest.raises(DataFormatError, match=f"{path}: 0 data bytes, expected {2 ** 64}"):
        read_idx(path)


def test_png_decompression_bomb_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_with_ihdr_size(_png(), 30000, 30000))
    with pytest.raises(DataFormatError, match=f"{path}: refused, image too large"):
        read_image(path, (8, 8))
    path.write_bytes(_with_ihdr_size(_png(), 10000, 10000))  # over MAX_IMAGE_PIXELS: PIL only warns
    with pytest.raises(DataFormatError, match="too large"):
        read_image(path, (8, 8))
    path.write_bytes(_png())
    assert read_image(path, (8, 8)).shape == (3, 8, 8)


def _refused_or_sound(read, path, content: bytes):
    path.write_bytes(content)
    try:
        read(path)
    except DataFormatError as error:
        assert str(path) in str(error)


@_PROPERTY
@given(content=st.binary(max_size=200))
def test_random_bytes(tmp_path, content):
    for name, read in (("f-idx", read_idx), ("f.png", lambda p: read_image(p, (4, 4))), ("batch", read_batch)):
        _refused_or_sound(read, tmp_path / name, content)


_VALID = {
    "idx": _idx((3, 2, 2), bytes(range(12))),
    "png": _png(),
    "batch": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2),
}
_READERS = {"idx": read_idx, "png": lambda p: read_image(p, (4, 4)), "batch": read_batch}


@_PROPERTY
@given(kind=st.sampled_from(sorted(_VALID)), cut=st.integers(min_value=0, max_value=10 ** 4))
def test_truncations(tmp_path, kind, cut):
    valid = _VALID[kind]
    path = tmp_path / f"file.{kind}"
    path.write_bytes(valid)
    expected = _READERS[kind](path)
    path.write_bytes(valid[:cut % len(valid)])
    try:
        got = _READERS[kind](path)
    except DataFormatError as error:
        assert str(path) in str(error)
        return
    # PIL decodes a PNG cut inside its trailing checksums: then every pixel must still be the true one
    assert kind == "png" and np.array_equal(got, expected)


@_PROPERTY
@given(kind=st.sampled_from(sorted(_VALID)), position=st.integers(min_value=0, max_value=40),
       value=st.integers(min_value=0, max_value=255))
def test_header_mutations(tmp_path, kind, position, value):
    content = bytearray(_VALID[kind])
    content[position % min(len(content), 40)] = value
    _refused_or_sound(_READERS[kind], tmp_path / f"file.{kind}", bytes(content))
