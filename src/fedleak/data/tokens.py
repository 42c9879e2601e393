"""Token data made from images when no text corpus is at hand, and token sequences as a next-token task."""
from __future__ import annotations

from dataclasses import replace

import torch.nn as nn

from fedleak.data.base import DatasetInfo, TensorDataset


def image_tokens(dataset: TensorDataset, *, patch: int = 4, levels: int = 16) -> TensorDataset:
    """An image dataset as token sequences for the text transformer when no text corpus is at hand: each
    ``patch x patch`` block's mean brightness quantised to ``levels`` tokens, in raster order."""
    images = dataset.inputs(slice(None)).mean(dim=1, keepdim=True)
    pooled = nn.functional.avg_pool2d(images, patch).flatten(1)
    tokens = (pooled * levels).long().clamp_max(levels - 1)
    info = DatasetInfo(f"{dataset.info.name}-tokens", (tokens.shape[1],), dataset.info.num_classes, kind="text",
                       vocab=tuple(f"level{i}" for i in range(levels)))
    return TensorDataset(tokens, dataset.y, info)


def next_tokens(dataset: TensorDataset) -> TensorDataset:
    """Token sequences as a language-modelling task: each sequence but its last token, labelled at every position
    with the token that follows (``(N, L - 1)`` inputs and labels; the vocabulary is the label set)."""
    tokens = dataset.x
    info = replace(dataset.info, input_shape=(tokens.shape[1] - 1,), num_classes=len(dataset.info.vocab))
    return TensorDataset(tokens[:, :-1], tokens[:, 1:], info)
