"""IDX files (LeCun's MNIST format) and the datasets shipped in it: MNIST, Fashion-MNIST and EMNIST.

An IDX file starts with the magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes,
then the values, big-endian. Files may be gzip-compressed (``.gz``) or raw.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, TensorDataset
from fedleak.data.pixels import image_dataset

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist

_PREFIX = {"train": "train", "test": "t10k"}

# EMNIST split -> number of classes (Cohen et al., 2017, Table II); "letters" labels are stored as 1..26.
EMNIST_SPLITS = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10, "mnist": 10}


MAX_IDX_BYTES = 1 << 30  # the largest IDX file fedleak reads (EMNIST byclass train images: 547 MB)


def read_idx(path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed when the name ends in ``.gz``).

    The header is read first; a file whose header declares more than ``max_bytes`` of data is refused before
    any data is read, and no more than the declared size (plus one byte, to detect trailing data) is ever
    decompressed, so a decompression bomb costs nothing but its header."""
    path = Path(path)
    compressed = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if compressed else path.open("rb")) as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _TYPES:
                raise DataFormatError(f"{path}: bad magic number {head.hex()!r}; expected 0000<type><ndim> "
                                      "(IDX file)")
            ndim = head[3]
            dims = handle.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataFormatError(f"{path}: IDX header cut short (expected {ndim} dimension sizes)")
            shape = tuple(int(v) for v in np.frombuffer(dims, dtype=">u4", count=ndim))
            dtype = np.dtype(_TYPES[head[2]])
            expected = math.prod(shape) * dtype.itemsize  # Python ints: huge declared dims cannot overflow
            if not compressed:  # the data's size is known without reading it
                found = path.stat().st_size - 4 - 4 * ndim
                if found != expected:
                    raise DataFormatError(f"{path}: {found} data bytes, expected {expected} for shape {shape}")
            if expected > max_bytes:
                raise DataFormatError(f"{path}: its header declares shape {shape} ({expected} bytes), more than "
                                      f"the {max_bytes} bytes an IDX file may hold; refused before decompressing")
            raw = handle.read(expected + 1)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found (expected an IDX file)") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataFormatError(f"{path}: not a readable gzip file ({err})") from None
    if len(raw) > expected:
        raise DataFormatError(f"{path}: more data than the {expected} bytes its header declares for shape {shape}")
    if len(raw) != expected:
        raise DataFormatError(f"{path}: {len(raw)} data bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def find_file(folders, name: str) -> Path:
    """The first of ``name`` or ``name.gz`` found in ``folders``; the error lists where it looked."""
    for folder in folders:
        for candidate in (Path(folder) / name, Path(folder) / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    places = ", ".join(str(f) for f in folders)
    raise DataFormatError(f"{name}[.gz] not found in {places}")


def load_idx_pair(folders, images_name: str, labels_name: str, *, transpose: bool = False):
    """uint8 images (N, H, W) and labels (N,) from an IDX image file and an IDX label file."""
    images_path, labels_path = find_file(folders, images_name), find_file(folders, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataFormatError(f"{labels_path}: expected a 1-d label array, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataFormatError(f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels")
    return (images.transpose(0, 2, 1) if transpose else images), labels.astype(np.int64)


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _PREFIX[split]


def _require_root(root, name: str, how: str = "") -> Path:
    if root is None:
        how = how or f"download it with `fedleak data download {name} --root DIR`"
        raise DataFormatError(f"{name}: no data folder given; {how} and pass root=DIR "
                              "(or use the 'bundled' Fashion-MNIST sample, which needs no files)")
    return Path(root)


def _mnist_like(name: str, folder_name: str, root, split: str, size) -> TensorDataset:
    prefix = _check_split(split)
    root = _require_root(root, name)
    folders = [root, root / folder_name / "raw"]  # the files themselves, or torchvision's layout
    images, labels = load_idx_pair(folders, f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    return image_dataset(name, images, labels, 10, size=size)


@DATASETS.register("mnist")
def load_mnist(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """MNIST (LeCun et al., 1998): 28x28 grey digits, 10 classes; ``root`` holds the four IDX files."""
    return _mnist_like("mnist", "MNIST", root, split, size)


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """Fashion-MNIST (Xiao et al., 2017): 28x28 grey clothing, 10 classes.

    ``root=None`` uses the Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) when present.
    """
    if root is None and FASHION_MNIST_SYSTEM_DIR.is_dir():
        root = FASHION_MNIST_SYSTEM_DIR
    return _mnist_like("fashion_mnist", "FashionMNIST", root, split, size)


@DATASETS.register("emnist")
def load_emnist(root=None, split: str = "train", *, split_name: str = "balanced", size=None) -> TensorDataset:
    """EMNIST (Cohen et al., 2017) in its IDX release (``gzip/emnist-<split_name>-train-images-idx3-ubyte.gz``).

    The files store every image transposed; they are turned upright here. Labels of ``letters`` become 0..25.
    """
    if split_name not in EMNIST_SPLITS:
        raise ValueError(f"unknown EMNIST split_name {split_name!r}; valid: {', '.join(EMNIST_SPLITS)}")
    _check_split(split)
    root = _require_root(root, "emnist", "unzip gzip.zip from https://www.nist.gov/itl/products-and-services/"
                                         "emnist-dataset into DIR")
    stem = f"emnist-{split_name}-{split}"
    images, labels = load_idx_pair([root, root / "gzip", root / "EMNIST" / "raw"],
                                   f"{stem}-images-idx3-ubyte", f"{stem}-labels-idx1-ubyte", transpose=True)
    if split_name == "letters":
        labels = labels - 1
    return image_dataset(f"emnist-{split_name}", images, labels, EMNIST_SPLITS[split_name], size=size)
