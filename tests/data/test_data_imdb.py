import pytest
import torch

from fedleak.data import DataFormatError, load_dataset
from fedleak.data.imdb import tokenize

REVIEWS = {
    ("train", "pos"): ["A great, GREAT film.<br /><br />Loved it!", "great acting and a great story"],
    ("train", "neg"): ["Boring film. Didn't like it", "the story was boring boring"],
    ("test", "pos"): ["great great zebra"],
    ("test", "neg"): ["boring"],
}


def make_acl_imdb(root):
    for (split, polarity), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / polarity
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{7 if polarity == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    (root / "aclImdb" / "train" / "unsup").mkdir()  # unlabelled reviews are ignored


def test_tokenize():
    assert tokenize("Didn't<br />LIKE it, 10/10!") == ["didn't", "like", "it", "10", "10"]


def test_vocab_padding_cut_and_unknown(tmp_path):
    make_acl_imdb(tmp_path)
    train = load_dataset("imdb", root=tmp_path, vocab_size=6, seq_len=5)
    vocab = train.info.vocab
    # counts in train: great 4, boring 3, a 2, film 2, it 2, story 2, ...; ties alphabetical
    assert vocab == ("<pad>", "<unk>", "great", "boring", "a", "film")
    assert train.info.kind == "text" and train.info.input_shape == (5,) and train.info.num_classes == 2
    assert train.y.tolist() == [0, 0, 1, 1]  # neg files first, then pos
    ids = {word: i for i, word in enumerate(vocab)}
    # neg/0: "boring film didn't like it" -> exactly 5 tokens; didn't/like/it unknown
    assert train.x[0].tolist() == [ids["boring"], ids["film"], 1, 1, 1]
    # pos/0 "a great great film loved it" (6 tokens) is cut to its first 5
    assert train.x[2].tolist() == [ids["a"], ids["great"], ids["great"], ids["film"], 1]
    test = load_dataset("imdb", root=tmp_path / "aclImdb", split="test", vocab_size=6, seq_len=5)
    assert test.info.vocab == vocab  # the training vocabulary
    assert test.x.tolist() == [[ids["boring"], 0, 0, 0, 0], [ids["great"], ids["great"], 1, 0, 0]]
    assert test.x.dtype == torch.int64 and test[1][0].dtype == torch.int64


def test_missing_folder(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"train/neg: folder not found"):
        load_dataset("imdb", root=tmp_path)
    with pytest.raises(DataFormatError, match="aclImdb"):
        load_dataset("imdb")
