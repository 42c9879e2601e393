"""A subword tokenizer trained here, offline, on the text fedleak has (Debian's fortunes; IMDB reviews when present),
and the fortunes as fixed-length windows of its tokens for language models (issue 25: federated fine-tuning of
language models; ``fedleak[llm]``).

The tokenizer is byte-level BPE from the ``tokenizers`` library (the scheme of GPT-2), with ``[PAD]`` = 0 and
``[UNK]`` = 1. Training is deterministic (one thread over the corpus in file order), and the result is cached as
JSON under ``cache_dir`` (default ``$FEDLEAK_CACHE`` or ``~/.cache/fedleak``), named by the corpus, the vocabulary
size and a digest of the corpus text, so a changed corpus trains a new one.

``fortunes_lm``: each fortune of at least ``seq_len + 1`` tokens gives its first ``seq_len + 1`` tokens; inputs
are the first ``seq_len``, labels the next token at every position (``(N, seq_len)``, ``num_classes`` = the
vocabulary), the training split of :mod:`fedleak.data.fortunes`'s fixed 80/20 permutation.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from fedleak.data import DATASETS
from fedleak.data.base import DataFormatError, DatasetInfo, TensorDataset
from fedleak.data.fortunes import TEST_FRACTION, fortune_texts

SPECIAL = ("[PAD]", "[UNK]")


def require_tokenizers():
    """The ``tokenizers`` module, or a one-line error naming the extra that installs it."""
    try:
        import tokenizers
    except ImportError as error:
        raise ValueError("language models need the llm extra: pip install 'fedleak[llm]' (transformers, peft, "
                           "tokenizers)") from error
    return tokenizers


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """Where trained tokenizers are kept: ``cache_dir``, else ``$FEDLEAK_CACHE``, else ``~/.cache/fedleak``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("FEDLEAK_CACHE") or Path.home() / ".cache" / "fedleak")


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE of ``vocab_size`` tokens (``[PAD]`` 0, ``[UNK]`` 1 first) trained on ``texts``."""
    tk = require_tokenizers()
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size must be an int >= 300 (256 bytes and merges), got {vocab_size!r}")
    tokenizer = tk.Tokenizer(tk.models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def local_tokenizer(corpus: str = "fortunes", *, root: str | Path | None = None, vocab_size: int = 2000,
                    cache_dir: str | Path | None = None):
    """The BPE tokenizer of ``corpus`` ("fortunes", or "imdb" with ``root`` the unpacked aclImdb folder), trained
    once and then read from the cache (module docstring)."""
    tk = require_tokenizers()
    texts = corpus_texts(corpus, root)
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    path = cache_folder(cache_dir) / "tokenizers" / f"{corpus}-bpe{vocab_size}-{digest}.json"
    if path.is_file():
        return tk.Tokenizer.from_file(str(path))
    tokenizer = train_tokenizer(texts, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    tokenizer.save(str(partial))
    partial.replace(path)
    return tokenizer


def corpus_texts(corpus: str, root: str | Path | None = None) -> list[str]:
    """The raw training texts of ``corpus``: every fortune, or the IMDB training reviews under ``root``."""
    if corpus == "fortunes":
        return fortune_texts(root)[0]
    if corpus == "imdb":
        if root is None:
            raise ValueError("corpus imdb needs root= (the unpacked aclImdb folder)")
        files = sorted((Path(root) / "train").glob("*/*.txt"))
        if not files:
            raise DataFormatError(f"{root}: no aclImdb/train/*/*.txt reviews")
        return [f.read_text(encoding="utf-8", errors="replace") for f in files]
    raise ValueError(f"unknown corpus {corpus!r}; valid: fortunes, imdb")


def token_windows(texts: list[str], tokenizer, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, length), index of each kept text): the first ``length`` tokens of every text that has as many."""
    encoded = tokenizer.encode_batch(texts)
    kept = [i for i, e in enumerate(encoded) if len(e.ids) >= length]
    if not kept:
        return torch.zeros(0, length, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    ids = torch.tensor([encoded[i].ids[:length] for i in kept], dtype=torch.long)
    return ids, torch.tensor(kept, dtype=torch.long)


@DATASETS.register("fortunes_lm")
def load_fortunes_lm(root=None, split: str = "train", *, vocab_size: int = 2000, seq_len: int = 16,
                     cache_dir: str | None = None) -> TensorDataset:
    """Fortunes as (N, seq_len) BPE token ids with the next token as label at every position (module docstring)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be an int >= 1, got {seq_len!r}")
    texts = fortune_texts(root)[0]
    tokenizer = local_tokenizer("fortunes", root=root, vocab_size=vocab_size, cache_dir=cache_dir)
    order = np.random.default_rng(0).permutation(len(texts))
    cut = int(round(len(texts) * (1 - TEST_FRACTION)))
    chosen = order[:cut] if split == "train" else order[cut:]
    ids, _ = token_windows([texts[i] for i in chosen], tokenizer, seq_len + 1)
    if len(ids) == 0:
        raise DataFormatError(f"fortunes_lm: no fortune of {seq_len + 1} tokens")
    vocab = tuple(tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size()))
    info = DatasetInfo(name="fortunes_lm", input_shape=(seq_len,), num_classes=len(vocab), kind="text", vocab=vocab)
    return TensorDataset(ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), info)
