"""IDX .gz files are decompressed no further than their header declares (issue 22): a bomb of zeros, a bomb with a
valid header declaring a huge array, and a small header followed by a flood of data are each refused in one line
naming the file, having decompressed at most the declared size."""
import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from fedleak.data.base import DataFormatError
from fedleak.data.idx import read_idx


def _gz(path, header: bytes, zeros: int):
    """``header`` then ``zeros`` zero bytes, gzip-compressed, written in chunks (the file stays small)."""
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(header)
        chunk = bytes(1 << 20)
        for start in range(0, zeros, len(chunk)):
            handle.write(chunk[:min(len(chunk), zeros - start)])
    return path


def _header(*shape):
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)


def _peak(read, path):
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError) as refused:
            read(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(refused.value), peak


def test_a_bomb_declaring_a_huge_array_is_refused_from_its_header(tmp_path):
    path = _gz(tmp_path / "bomb-idx3-ubyte.gz", _header(400_000, 100, 100), 16 << 20)  # declares 4 GB
    message, peak = _peak(read_idx, path)
    assert message.startswith(f"{path}: its header declares shape (400000, 100, 100)") and "\n" not in message
    assert peak < 4 << 20  # bytes: the header only, not the 16 MiB of zeros behind it


def test_a_small_header_with_a_flood_of_data_reads_no_more_than_declared(tmp_path):
    path = _gz(tmp_path / "flood-idx3-ubyte.gz", _header(10, 28, 28), 16 << 20)
    message, peak = _peak(read_idx, path)
    assert message == f"{path}: more data than the 7840 bytes its header declares for shape (10, 28, 28)"
    assert peak < 4 << 20


def test_zeros_without_a_header_are_refused_at_the_magic_number(tmp_path):
    path = _gz(tmp_path / "zeros-idx3-ubyte.gz", b"", 16 << 20)
    message, peak = _peak(read_idx, path)
    assert "bad magic number '00000000'" in message and str(path) in message
    assert peak < 4 << 20


def test_a_cap_below_the_declared_size_refuses_and_a_sound_file_reads(tmp_path):
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    path = tmp_path / "ok-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header(2, 4, 4) + images.tobytes()))
    assert np.array_equal(read_idx(path), images)
    with pytest.raises(DataFormatError, match="more than the 16 bytes an IDX file may hold"):
        read_idx(path, max_bytes=16)
