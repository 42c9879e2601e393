"""The ``fortunes`` loader on a small corpus the test writes: categories, '%' separators, tokens, split."""
import pytest

from fedleak.data import DATASETS, DataFormatError, load_dataset


def _corpus(root):
    (root / "science").write_text("Gravity is a myth.\n%\nThe earth sucks.\n%\n%\nAtoms: the building blocks.\n")
    (root / "computers").write_text("Real programmers count from zero\n  -- anon\n%\nThe cloud is a computer.\n")
    (root / "science.dat").write_bytes(b"\x00\x01binary index, not fortunes")
    (root / "science.u8").write_text("a UTF-8 copy is not read again\n")


def test_fortunes_are_split_per_percent_line_and_labelled_by_file(tmp_path):
    _corpus(tmp_path)
    train = load_dataset("fortunes", root=tmp_path, vocab_size=50, seq_len=8)
    test = load_dataset("fortunes", root=tmp_path, split="test", vocab_size=50, seq_len=8)
    assert len(train) + len(test) == 5  # the empty fortune between two '%' lines is skipped
    assert train.info.num_classes == 2 and train.info.input_shape == (8,) and train.info.kind == "text"
    vocab = train.info.vocab
    sentences = {" ".join(vocab[t] for t in row if t != 0) for row in train.x.tolist()}
    everything = {"gravity is a myth", "the earth sucks", "atoms the building blocks",
                  "real programmers count from zero anon", "the cloud is a computer"}
    assert sentences <= everything and len(sentences) == len(train)
    labels = dict(zip((" ".join(vocab[t] for t in row if t != 0) for row in train.x.tolist()), train.y.tolist()))
    for sentence, label in labels.items():
        assert label == (1 if sentence in {"gravity is a myth", "the earth sucks", "atoms the building blocks"} else 0)
    assert "fortunes" in DATASETS.names()


def test_a_missing_or_empty_corpus_is_named(tmp_path):
    with pytest.raises(DataFormatError, match="nowhere: folder not found"):
        load_dataset("fortunes", root=tmp_path / "nowhere")
    (tmp_path / "index.dat").write_bytes(b"\x00")
    with pytest.raises(DataFormatError, match="no fortune files"):
        load_dataset("fortunes", root=tmp_path)
