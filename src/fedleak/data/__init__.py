"""Datasets: ``load_dataset(name, root=None, split="train", **options)`` and client partitioning.

Every loader returns a :class:`TensorDataset` held in memory: images as uint8 (N, C, H, W) served as [0, 1]
floats, text as int64 token ids. Image loaders take ``size=(H, W)`` (or an int) to resize every image.
"""
from __future__ import annotations

from fedleak.data.base import DataFormatError, DatasetInfo, TensorDataset
from fedleak.registry import Registry, UnknownNameError

DATASETS: Registry = Registry("dataset", fixed=("root", "split"))


def load_dataset(name: str, root=None, split: str = "train", *, device=None, **options) -> TensorDataset:
    """Load the registered dataset ``name`` (``split`` "train" or "test") from ``root``, optionally onto ``device``.

    ``options`` go to the loader, e.g. ``size=32`` for images or ``vocab_size``/``seq_len`` for ``imdb``.
    """
    dataset = DATASETS.build(name, root, split, **options)
    return dataset if device is None else dataset.to(device)


def dataset_options(name: str) -> list[str]:
    """The keyword options the loader of ``name`` accepts (e.g. ``["size"]``)."""
    return list(DATASETS.options(name))


from fedleak.data import (bundled_sample, cifar, digits, fortunes, idx, image_folder, imdb,  # noqa: E402,F401
                          skimage_photos, text_tokenizer)
from fedleak.data.partition import ClientData, dirichlet_partition, iid_partition, split_clients  # noqa: E402

__all__ = ["DATASETS", "ClientData", "DataFormatError", "DatasetInfo", "TensorDataset", "UnknownNameError",
           "dataset_options", "dirichlet_partition", "iid_partition", "load_dataset", "split_clients"]
