"""The Fashion-MNIST sample shipped inside fedleak, so that every command and test runs with no download.

``fedleak/data/bundled/fashion_mnist_sample.npz`` holds 2,000 training images (200 per class) and 500 test images
(50 per class) of Fashion-MNIST (Xiao et al., 2017; MIT licence, Zalando SE, see ``bundled/NOTICE``), chosen by
:func:`build_bundled_sample` with seed 0 from the full IDX files, together with their indices in those files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, TensorDataset
from fedleak.data.idx import load_idx_pair
from fedleak.data.pixels import image_dataset

SAMPLE_PATH = Path(__file__).with_name("bundled") / "fashion_mnist_sample.npz"
PER_CLASS = {"train": 200, "test": 50}
_PREFIX = {"train": "train", "test": "t10k"}


def _per_class_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for label in range(10):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise DataFormatError(f"class {label} has {len(members)} images, fewer than the {per_class} to sample")
        picks.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))  # source order, so classes are mixed as in the full files


def build_bundled_sample(src_dir, out_path=SAMPLE_PATH, seed: int = 0) -> Path:
    """Write the sample from the full Fashion-MNIST IDX files in ``src_dir`` (how the shipped file was made).

    Per split and class, ``PER_CLASS`` images are drawn without replacement by ``numpy.random.default_rng(seed)``;
    arrays ``x_<split>`` (uint8, N x 28 x 28), ``y_<split>`` and ``index_<split>`` (rows in the source files).
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, prefix in _PREFIX.items():
        images, labels = load_idx_pair([Path(src_dir)], f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        index = _per_class_indices(labels, PER_CLASS[split], rng)
        arrays |= {f"x_{split}": images[index], f"y_{split}": labels[index].astype(np.uint8),
                   f"index_{split}": index.astype(np.int32)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **arrays)
    return out_path


@DATASETS.register("bundled")
def load_bundled(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """The shipped Fashion-MNIST sample (``root`` may name another file written by :func:`build_bundled_sample`)."""
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(root) if root is not None else SAMPLE_PATH
    try:
        with np.load(path, allow_pickle=False) as sample:
            images, labels = sample[f"x_{split}"], sample[f"y_{split}"]
    except FileNotFoundError:
        raise DataFormatError(f"{path}: sample file not found (reinstall fedleak or run build_bundled_sample)") from None
    except (KeyError, ValueError, OSError) as err:
        raise DataFormatError(f"{path}: not a fedleak sample file with x_{split}/y_{split} arrays ({err})") from None
    return image_dataset("bundled", images, labels, 10, size=size)
