"""Debian's ``fortunes`` corpus (the ``fortune`` program's quotations, /usr/share/games/fortunes), as fixed-length
token sequences: an offline stand-in for IMDB (paper 002 Table 3) that installs from the Debian registry
(``apt-get install fortunes``).

Each file without an extension is one category (``computers``, ``science``, ...) and its label; its fortunes are
separated by lines holding only ``%``. Tokens, vocabulary and padding are IMDB's (:mod:`fedleak.data.imdb`): the
``vocab_size - 2`` most frequent words of the training split, index 0 padding, 1 any other word. The split is a
fixed 80/20 permutation. Fortunes are short (tens of words), so most of a 250-token sequence is padding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, DatasetInfo, TensorDataset
from fedleak.data.imdb import build_vocab, encode, tokenize

DEFAULT_ROOT = Path("/usr/share/games/fortunes")
TEST_FRACTION = 0.2


def _read_categories(root: Path, entry) -> tuple[list, list[int], tuple[str, ...]]:
    """``entry(chunk)`` of every fortune of ``root`` that gives a non-empty entry, its category label and the
    category names (sorted file names of the files that hold at least one entry)."""
    if not root.is_dir():
        raise DataFormatError(f"{root}: folder not found (install Debian's fortunes: apt-get install fortunes, or "
                              "pass root=DIR holding fortune files separated by '%' lines)")
    texts, labels, categories = [], [], []
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.suffix):
        entries = [e for e in (entry(chunk) for chunk in _split(path)) if e]
        if entries:
            texts += entries
            labels += [len(categories)] * len(entries)
            categories.append(path.name)
    if not texts:
        raise DataFormatError(f"{root}: no fortune files (files without extension holding '%'-separated text)")
    return texts, labels, tuple(categories)


def read_fortunes(root: Path) -> tuple[list[list[str]], list[int], tuple[str, ...]]:
    """Tokenised fortunes, their category labels and the category names (sorted file names) of ``root``; empty
    fortunes are skipped."""
    return _read_categories(root, tokenize)


def fortune_texts(root: Path | None = None) -> tuple[list[str], list[int], tuple[str, ...]]:
    """The raw text of every non-empty fortune of ``root`` (default /usr/share/games/fortunes), its category label
    and the category names, in sorted file order (for a subword tokenizer, :mod:`fedleak.data.text_tokenizer`)."""
    return _read_categories(DEFAULT_ROOT if root is None else Path(root), str.strip)


def _split(path: Path) -> list[str]:
    """The fortunes of one file: the text between lines that hold only ``%``."""
    chunks, current = [], []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if line.strip() == "%":
            chunks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    chunks.append("\n".join(current))
    return chunks


@DATASETS.register("fortunes")
def load_fortunes(root=None, split: str = "train", *, vocab_size: int = 10000, seq_len: int = 250) -> TensorDataset:
    """Fortunes as (N, seq_len) token ids labelled by their category (one per file of ``root``, default
    /usr/share/games/fortunes)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if vocab_size < 3 or seq_len < 1:
        raise ValueError(f"need vocab_size >= 3 and seq_len >= 1, got {vocab_size} and {seq_len}")
    texts, labels, categories = read_fortunes(Path(root) if root is not None else DEFAULT_ROOT)
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(round(len(texts) * (1 - TEST_FRACTION)))
    train, test = order[:cut], order[cut:]
    vocab = build_vocab([texts[i] for i in train], vocab_size)
    chosen = train if split == "train" else test
    info = DatasetInfo(name="fortunes", input_shape=(seq_len,), num_classes=len(categories), kind="text",
                       vocab=vocab)
    return TensorDataset(encode([texts[i] for i in chosen], vocab, seq_len),
                         torch.tensor([labels[i] for i in chosen]), info)
