import gzip
import struct

import numpy as np
import pytest
import torch

from fedleak.data import DataFormatError, load_dataset
from fedleak.data.idx import read_idx


def write_idx(path, array: np.ndarray, *, compress: bool = False, magic: bytes | None = None) -> None:
    """An IDX file in the real format: 00 00 08 ndim, big-endian uint32 sizes, then the uint8 values."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    raw = header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_mnist_folder(folder, n_train=30, n_test=10, compress=True, prefix="", transpose=False, seed=0):
    """Random 28x28 images + labels under MNIST's file names; returns the arrays (as a reader should see them)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        stored = images.transpose(0, 2, 1) if transpose else images
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}{split}-images-idx3-ubyte{suffix}", stored, compress=compress)
        write_idx(folder / f"{prefix}{split}-labels-idx1-ubyte{suffix}", labels, compress=compress)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files_gz_and_raw(tmp_path, compress):
    arrays = make_mnist_folder(tmp_path, compress=compress)
    train = load_dataset("mnist", root=tmp_path)
    test = load_dataset("mnist", root=tmp_path, split="test")
    assert len(train) == 30 and len(test) == 10
    assert train.info.input_shape == (1, 28, 28) and train.info.num_classes == 10
    assert torch.equal(train.x[:, 0], torch.from_numpy(arrays["train"][0]))
    assert torch.equal(test.y, torch.from_numpy(arrays["t10k"][1]).long())
    x, y = train[3]
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert torch.allclose(x * 255, torch.from_numpy(arrays["train"][0][3]).float().unsqueeze(0))
    expected_mean = arrays["train"][0].mean() / 255
    assert train.info.mean[0] == pytest.approx(expected_mean, abs=1e-3)


def test_torchvision_layout_and_resize(tmp_path):
    make_mnist_folder(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset("fashion_mnist", root=tmp_path, size=32)
    assert data.x.shape == (30, 1, 32, 32) and data.info.input_shape == (1, 32, 32)


def test_bad_magic_names_the_file(tmp_path):
    make_mnist_folder(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((2, 28, 28), np.uint8), compress=True, magic=b"\x12\x34\x08\x03")
    with pytest.raises(DataFormatError, match="train-images-idx3-ubyte.gz.*magic"):
        load_dataset("mnist", root=tmp_path)


def test_truncated_and_non_gzip_files_are_rejected(tmp_path):
    short = tmp_path / "short"
    write_idx(short, np.zeros((4, 28, 28), np.uint8))
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(DataFormatError, match="short: .*data bytes"):
        read_idx(short)
    fake = tmp_path / "fake.gz"
    fake.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="fake.gz: not a readable gzip"):
        read_idx(fake)


def test_missing_file_and_missing_root(tmp_path):
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\[\.gz\] not found"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(DataFormatError, match="fedleak data download mnist"):
        load_dataset("mnist")


def test_label_count_mismatch(tmp_path):
    make_mnist_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8), compress=True)
    with pytest.raises(DataFormatError, match="30 images but train-labels-idx1-ubyte.gz has 7 labels"):
        load_dataset("mnist", root=tmp_path)


def test_emnist_images_are_transposed_back_and_letters_shifted(tmp_path):
    folder = tmp_path / "gzip"
    arrays = make_mnist_folder(folder, prefix="emnist-digits-", transpose=True)
    data = load_dataset("emnist", root=tmp_path, split_name="digits")
    assert data.info.name == "emnist-digits" and data.info.num_classes == 10
    assert torch.equal(data.x[:, 0], torch.from_numpy(arrays["train"][0]))  # upright again
    for split in ("train", "test"):  # letters are stored 1..26
        images = np.zeros((3, 28, 28), np.uint8)
        write_idx(folder / f"emnist-letters-{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(folder / f"emnist-letters-{split}-labels-idx1-ubyte.gz", np.array([1, 13, 26]), compress=True)
    letters = load_dataset("emnist", root=tmp_path, split_name="letters", split="test")
    assert letters.y.tolist() == [0, 12, 25] and letters.info.num_classes == 26
    with pytest.raises(ValueError, match="unknown EMNIST split_name 'bogus'"):
        load_dataset("emnist", root=tmp_path, split_name="bogus")


def test_fashion_mnist_default_uses_system_copy():
    from fedleak.data.idx import FASHION_MNIST_SYSTEM_DIR

    if not FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    test = load_dataset("fashion_mnist", split="test")
    assert len(test) == 10000 and torch.bincount(test.y).tolist() == [1000] * 10
    assert test.info.mean[0] == pytest.approx(0.286, abs=0.01) and test.info.std[0] == pytest.approx(0.353, abs=0.01)
