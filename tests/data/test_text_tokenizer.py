"""The local BPE tokenizer: trained offline, deterministic, cached; fortunes as next-token windows."""
import pytest
import torch

pytest.importorskip("tokenizers")
pytestmark = pytest.mark.llm

from fedleak.data import load_dataset  # noqa: E402
from fedleak.data.text_tokenizer import local_tokenizer, train_tokenizer  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog and a cat", "the end of the story is near"] * 20


def test_training_is_deterministic():
    assert train_tokenizer(TEXTS, 300).to_str() == train_tokenizer(TEXTS, 300).to_str()


def test_fortunes_tokenizer_is_cached_and_windows_shift(tmp_path):
    first = local_tokenizer(vocab_size=400, cache_dir=tmp_path)
    assert len(list((tmp_path / "tokenizers").glob("fortunes-bpe400-*.json"))) == 1
    assert local_tokenizer(vocab_size=400, cache_dir=tmp_path).to_str() == first.to_str()
    data = load_dataset("fortunes_lm", vocab_size=400, seq_len=8, cache_dir=str(tmp_path))
    assert data.x.shape[1] == 8 and data.info.num_classes == 400
    assert torch.equal(data.x[:, 1:], data.y[:, :-1])  # the label at p is the token at p + 1
    assert first.decode(data.x[0].tolist()).strip()


def test_bad_vocabulary_size_is_one_line():
    with pytest.raises(ValueError, match="vocab_size must be an int >= 300"):
        train_tokenizer(TEXTS, 10)
