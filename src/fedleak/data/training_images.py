"""The training split of an image data set for the reproductions, with the one offline fallback they share."""
from __future__ import annotations

from fedleak.data import DataFormatError, load_dataset

DEFAULT = "fashion_mnist"  # the only data set that falls back to the bundled sample when absent
SKIMAGE_GRID = 6  # skimage_photos cut into 6 x 6 tiles per photo: 288 tiles, enough for batches of 200


def load_training_images(name: str, root: str | None = None, size: int | None = None) -> tuple[object, str]:
    """``(data, name it was loaded as)``: the training split of ``name`` (resized to ``size`` when given). Only the
    default, Fashion-MNIST from the Debian package, falls back to the bundled sample when it is not installed; a
    data set the user names with a root must be there."""
    options = {"size": size} if size is not None else {}
    if name == "skimage_photos":
        options["grid"] = SKIMAGE_GRID
    try:
        return load_dataset(name, root=root, **options), name
    except DataFormatError as error:
        if name != DEFAULT or root is not None:
            raise
        print(f"{name} not found ({error}); using the bundled Fashion-MNIST sample")
        return load_dataset("bundled"), "bundled"
