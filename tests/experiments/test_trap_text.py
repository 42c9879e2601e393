"""``fedleak reproduce text`` (paper 002 Table 3) on a tiny corpus: files written, extraction checked against the
true batch."""
import json

import torch

from fedleak.cli import main
from fedleak.experiments.trap_text import TrapTextConfig, measure, reproduce_trap_text, word_recall


def _corpus(root, count=60):
    generator = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(40)]
    for name in ("one", "two"):
        lines = []
        for _ in range(count // 2):
            length = int(torch.randint(3, 9, (1,), generator=generator))
            lines.append(" ".join(words[int(i)] for i in torch.randint(0, 40, (length,), generator=generator)))
        (root / name).write_text("\n%\n".join(lines) + "\n")


def test_word_recall_counts_words_not_padding():
    truth = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    rows = torch.tensor([[5, 6, -1, 0], [8, -1, -1, -1]])
    assert torch.allclose(word_recall(rows, truth), torch.tensor([2 / 3, 1 / 2]))


def test_tiny_text_reproduction_extracts_true_sentences_and_writes_its_tables(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _corpus(corpus)
    config = TrapTextConfig(root=str(corpus), batch_sizes=(4, 16), runs=2, vocab_size=50, seq_len=10,
                            model_options={"embed_dim": 8, "hidden": 200})
    out = tmp_path / "out"
    result = reproduce_trap_text(config, out, progress=False)
    rows = {row["B"]: row for row in result["rows"]}
    # trap weights give back real sentences of the batch (R is counted by exact match with the true batch)
    assert float(rows[4]["active R"]) >= 0.5 and float(rows[16]["active R"]) > 0
    assert float(rows[4]["active word_recall"]) >= float(rows[4]["active R"])
    assert float(rows[16]["active R"]) <= float(rows[4]["active R"])  # larger batches, more overlays
    for name in ("table.txt", "table.csv", "comparison.md", "config.json", "cells.jsonl"):
        assert (out / name).exists(), name
    assert "| 4 | active |" in (out / "comparison.md").read_text()
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 0
    cells = (out / "cells.jsonl").read_text()
    assert reproduce_trap_text(config, out, progress=False)["rows"] == result["rows"]  # resumed, nothing redone
    assert (out / "cells.jsonl").read_text() == cells


def test_passive_extraction_scores_against_the_true_batch(tmp_path):
    _corpus(tmp_path)
    from fedleak.data import load_dataset

    config = TrapTextConfig(root=str(tmp_path), vocab_size=50, seq_len=10,
                            model_options={"embed_dim": 8, "hidden": 200})
    data = load_dataset("fortunes", root=tmp_path, vocab_size=50, seq_len=10)
    cell = measure(data, config, batch=4, attack="passive", run=0)
    assert 0 < cell["A"] <= 1 and 0 <= cell["P"] <= cell["A"]
    assert 0 < cell["R"] <= cell["word_recall"] + 1e-9


def test_the_cli_refuses_an_image_dataset(tmp_path, capsys):
    assert main(["reproduce", "text", "--dataset", "digits", "--out", str(tmp_path / "out")]) == 2
    assert "reproduce text needs a text dataset" in capsys.readouterr().err
