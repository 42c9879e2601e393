"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) from their "python version" pickle batches.

The batches are pickles, which can run arbitrary code when loaded. They are read with an unpickler that only
rebuilds numpy arrays and plain containers, so a tampered file fails with :class:`DataFormatError` instead.
"""
from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, TensorDataset
from fedleak.data.pixels import image_dataset

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
_CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR100_FILES = {"train": ["train"], "test": ["test"]}

# The only globals a CIFAR batch needs: numpy's array and dtype reconstruction (numpy 1 names them under
# numpy.core, numpy 2 under numpy._core; the objects are taken from numpy itself), and _codecs.encode, which
# protocol-2 pickles written by Python 3 use for bytes (torch.load(weights_only=True) allows it as well).
_ARRAY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_SCALAR_RECONSTRUCT = np.float64(0).__reduce__()[0]
_ALLOWED = {
    **{(f"{core}.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _SCALAR_RECONSTRUCT for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data batch") from None


def read_batch(path) -> dict:
    """The dict stored in one CIFAR pickle batch, with str keys (the files were written by Python 2)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found (expected a CIFAR python batch)") from None
    except Exception as err:  # any unpickling failure means the file is not a CIFAR batch
        raise DataFormatError(f"{path}: not a CIFAR python batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(path: Path, label_key: str):
    batch = read_batch(path)
    if "data" not in batch or label_key not in batch:
        raise DataFormatError(f"{path}: expected keys 'data' and {label_key!r}, found {sorted(batch)}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),):
        raise DataFormatError(f"{path}: {len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _folder(root, name: str, dirname: str) -> Path:
    if root is None:
        raise DataFormatError(f"{name}: no data folder given; download it with `fedleak data download {name} "
                              f"--root DIR` and pass root=DIR")
    root = Path(root)
    return root if root.name == dirname else root / dirname


def _load(name: str, root, split: str, dirname: str, files: dict, label_key: str, classes: int, size):
    if split not in files:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = _folder(root, name, dirname)
    parts = [_batch_arrays(folder / f, label_key) for f in files[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return image_dataset(name, images, labels, classes, size=size)


@DATASETS.register("cifar10")
def load_cifar10(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """CIFAR-10: 32x32 colour images, 10 classes; ``root`` holds (or is) ``cifar-10-batches-py``."""
    return _load("cifar10", root, split, CIFAR10_DIR, _CIFAR10_FILES, "labels", 10, size)


@DATASETS.register("cifar100")
def load_cifar100(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """CIFAR-100 with its 100 fine labels; ``root`` holds (or is) ``cifar-100-python``."""
    return _load("cifar100", root, split, CIFAR100_DIR, _CIFAR100_FILES, "fine_labels", 100, size)
