"""IMDB movie reviews (Maas et al., 2011) from the ``aclImdb`` folder, as fixed-length token sequences.

Boenisch et al. (Sec. 6, Table 8) feed 250-token sentences over a 10,000-word vocabulary to an embedding layer;
those are the defaults. Index 0 is padding and 1 stands for any word outside the vocabulary. The vocabulary is the
most frequent words of the training reviews (ties broken alphabetically), so both splits share it. Sequences keep
their first ``seq_len`` tokens and are padded at the end (Keras, which the paper used, pads and cuts at the front).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, DatasetInfo, TensorDataset

PAD, UNKNOWN = 0, 1
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    """Lower-case words of a review (letters, digits and inner apostrophes); HTML line breaks are spaces."""
    return _WORD.findall(_LINE_BREAK.sub(" ", text).lower())


def read_reviews(folder: Path) -> tuple[list[list[str]], list[int]]:
    """Tokenised reviews and labels (neg = 0, pos = 1) of ``aclImdb/<split>``, in sorted file order."""
    texts, labels = [], []
    for label, polarity in enumerate(("neg", "pos")):
        directory = folder / polarity
        if not directory.is_dir():
            raise DataFormatError(f"{directory}: folder not found (expected aclImdb/<split>/{{neg,pos}}/*.txt)")
        files = sorted(directory.glob("*.txt"))
        if not files:
            raise DataFormatError(f"{directory}: no *.txt reviews")
        for path in files:
            try:
                texts.append(tokenize(path.read_text(encoding="utf-8")))
            except UnicodeDecodeError as err:
                raise DataFormatError(f"{path}: not UTF-8 text ({err})") from None
            labels.append(label)
    return texts, labels


def build_vocab(texts: list[list[str]], vocab_size: int) -> tuple[str, ...]:
    """``("<pad>", "<unk>", ...)`` followed by the ``vocab_size - 2`` most frequent words."""
    counts = Counter(word for words in texts for word in words)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 2]
    return ("<pad>", "<unk>", *(word for word, _ in ranked))


def encode(texts: list[list[str]], vocab: tuple[str, ...], seq_len: int) -> torch.Tensor:
    """Token ids (N, seq_len): words outside ``vocab`` become 1, sequences are cut or padded with 0 at the end."""
    index = {word: i for i, word in enumerate(vocab)}
    out = torch.full((len(texts), seq_len), PAD, dtype=torch.long)
    for row, words in enumerate(texts):
        ids = [index.get(word, UNKNOWN) for word in words[:seq_len]]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def _acl_folder(root) -> Path:
    if root is None:
        raise DataFormatError("imdb: pass root=DIR, the unpacked aclImdb folder from "
                              "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz")
    root = Path(root)
    return root / "aclImdb" if (root / "aclImdb").is_dir() else root


@DATASETS.register("imdb")
def load_imdb(root=None, split: str = "train", *, vocab_size: int = 10000, seq_len: int = 250) -> TensorDataset:
    """IMDB sentiment reviews as (N, seq_len) token ids with labels 0 (negative) / 1 (positive)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if vocab_size < 3 or seq_len < 1:
        raise ValueError(f"need vocab_size >= 3 and seq_len >= 1, got {vocab_size} and {seq_len}")
    folder = _acl_folder(root)
    train_texts, train_labels = read_reviews(folder / "train")
    vocab = build_vocab(train_texts, vocab_size)
    texts, labels = (train_texts, train_labels) if split == "train" else read_reviews(folder / "test")
    info = DatasetInfo(name="imdb", input_shape=(seq_len,), num_classes=2, kind="text", vocab=vocab)
    return TensorDataset(encode(texts, vocab, seq_len), torch.tensor(labels), info)
