"""Natural colour photographs bundled with scikit-image, cut into small tiles for colour-image attack tests.

Each photo is centre-cropped to a square, resized to ``grid`` x ``grid`` tiles of ``size`` and cut along that grid
(training split); the test split takes the ``grid - 1`` x ``grid - 1`` tiles of the same photo shifted by half a
tile. A tile's label is the index of its photo in :data:`PHOTOS`.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from fedleak.data import DATASETS
from fedleak.data.base import TensorDataset
from fedleak.data.pixels import as_size, image_dataset

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "stereo_motorcycle")


def _photo(name: str) -> np.ndarray:
    from skimage import data  # optional dependency (fedleak[dev])

    image = getattr(data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle gives (left, right, disparity)


def photo_tiles(image: np.ndarray, size: tuple[int, int], grid: int, split: str) -> np.ndarray:
    """uint8 tiles (N, 3, H, W) of one RGB photo (H', W', 3), laid out as described in the module docstring."""
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side, :3])
    height, width = size
    big = np.asarray(square.resize((grid * width, grid * height), Image.BILINEAR))
    dy, dx, count = (0, 0, grid) if split == "train" else (height // 2, width // 2, grid - 1)
    tiles = [big[dy + i * height: dy + (i + 1) * height, dx + j * width: dx + (j + 1) * width]
             for i in range(count) for j in range(count)]
    return np.stack(tiles).transpose(0, 3, 1, 2)


@DATASETS.register("skimage_photos")
def load_skimage_photos(root=None, split: str = "train", *, size=(32, 32), grid: int = 3) -> TensorDataset:
    """Tiles of the scikit-image colour photos (72 train / 32 test at the defaults); ``root`` is not used."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if grid < 2:
        raise ValueError(f"grid must be at least 2 (the test split uses grid - 1 tiles per side), got {grid}")
    size = as_size(size)
    tiles = [photo_tiles(_photo(name), size, grid, split) for name in PHOTOS]
    labels = np.repeat(np.arange(len(PHOTOS)), [len(t) for t in tiles])
    return image_dataset("skimage_photos", np.concatenate(tiles), labels, len(PHOTOS))
