"""Images sorted into one sub-folder per class (``root/<class>/<image>``), as torchvision's ImageFolder reads them.

Class indices follow the sorted sub-folder names. A ``root`` holding ``train/`` and ``test/`` folders, each laid out
this way, provides both splits; otherwise ``root`` itself is the training split.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, TensorDataset
from fedleak.data.pixels import as_size, image_dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def class_folders(folder: Path) -> list[Path]:
    """The class sub-folders of ``folder``, sorted by name (hidden folders are skipped)."""
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: folder not found (expected one sub-folder of images per class)")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataFormatError(f"{folder}: no class sub-folders (expected {folder}/<class>/<image>)")
    return classes


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 RGB of shape (3, H, W), resized to ``size`` = (H, W) with bilinear filtering.

    An image whose header declares more than PIL's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb) is refused
    before it is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataFormatError(f"{path}: refused, image too large ({err})") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(f"{path}: not a readable image ({err})") from None
    except Exception as err:  # PIL's decoders raise many types (SyntaxError, ValueError, ...) for a broken file
        raise DataFormatError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


@DATASETS.register("imagefolder")
def load_image_folder(root=None, split: str = "train", *, size=(32, 32)) -> TensorDataset:
    """Every image under ``root/<class>/`` (or ``root/<split>/<class>/``) as 3-channel ``size`` images."""
    if root is None:
        raise DataFormatError("imagefolder: pass root=DIR, a folder with one sub-folder of images per class")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root, size = Path(root), as_size(size)
    if (root / "train").is_dir() and (root / "test").is_dir():
        folder, names = root / split, [p.name for p in class_folders(root / "train")]
        unknown = sorted({p.name for p in class_folders(folder)} - set(names))
        if unknown:
            raise DataFormatError(f"{folder}: classes {unknown} have no folder in {root / 'train'}")
    elif split == "train":
        folder, names = root, [p.name for p in class_folders(root)]
    else:
        raise DataFormatError(f"{root}: no test split (expected {root}/train/<class>/ and {root}/test/<class>/)")
    images, labels = [], []
    for label, name in enumerate(names):
        class_dir = folder / name
        files = sorted(p for p in class_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)  # none if no folder
        images += [read_image(p, size) for p in files]
        labels += [label] * len(files)
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataFormatError(f"{folder}: no images ({suffixes}) in its class folders")
    return image_dataset("imagefolder", np.stack(images), labels, len(names))
