"""``fedleak reproduce dager`` on a tiny profile: results.json in the issue's shape, decoder recovered exactly."""
import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.llm

from fedleak.experiments.dager import DagerReproductionConfig, reproduce_dager  # noqa: E402


def test_tiny_reproduction_writes_the_issue_shape(tmp_path):
    config = DagerReproductionConfig.quick(batch_sizes=(2,), encoder_batch_sizes=(1,), seq_len=6, lora_rank=32,
                                           decoder="n_layer=2,n_embd=64,n_head=2",
                                           encoder="num_hidden_layers=3,hidden_size=64,num_attention_heads=2,"
                                                   "intermediate_size=128", cache_dir=str(tmp_path / "cache"))
    reproduce_dager(config, tmp_path / "out", progress=False)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results) == {"decoder", "encoder"} and set(results["decoder"]) == {"full", "lora"}
    assert set(results["decoder"]["full"]["2"]) >= {"rouge1", "rouge2", "exact"}
    assert results["decoder"]["full"]["2"]["exact"] == 1.0
    assert results["encoder"]["full"]["1"]["rouge1"] == 1.0
    assert "paper" in (tmp_path / "out" / "comparison.md").read_text()


def test_other_data_is_refused_in_one_line():
    with pytest.raises(ValueError, match="reads Debian's fortunes"):
        DagerReproductionConfig(dataset="cifar10")
