"""scikit-learn's 8x8 handwritten digits (UCI optical recognition set, 1,797 images): a tiny set for fast tests."""
from __future__ import annotations

import numpy as np

from fedleak.data import DATASETS
from fedleak.data.base import TensorDataset
from fedleak.data.pixels import image_dataset

TEST_FRACTION = 0.2


@DATASETS.register("digits")
def load_digits(root=None, split: str = "train", *, size=None) -> TensorDataset:
    """The digits (grey levels 0..16 scaled to 0..255), split 80/20 by a fixed permutation; ``root`` is unused."""
    from sklearn.datasets import load_digits as sklearn_digits  # optional dependency (fedleak[dev])

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    digits = sklearn_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(round(len(images) * (1 - TEST_FRACTION)))
    index = order[:cut] if split == "train" else order[cut:]
    return image_dataset("digits", images[index], digits.target[index], 10, size=size)
