"""``fedleak audit`` on a Hugging Face causal language model (issue 25): the hf spec is read, ``fortunes`` becomes
its next-token form (and the report says so), DAGER recovers each victim's sentence exactly and the report holds
the sentences, original beside recovered; DAGER does not apply to an image model."""
import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from fedleak.audit import AuditConfig, run_audit  # noqa: E402
from fedleak.audit.inputs import LM_SEQ_LEN, causal_language_model, language_model_data  # noqa: E402
from fedleak.cli import main  # noqa: E402
from fedleak.report.html import escape  # noqa: E402

MODEL = "hf:gpt2:n_layer=2,n_embd=64"


def test_language_model_reads_next_token_data():
    assert causal_language_model(MODEL) and causal_language_model("hf:llama:head=lm")
    assert not causal_language_model("hf:bert") and not causal_language_model("cnn")
    data, note = language_model_data(MODEL, "fortunes")
    assert data == f"fortunes_lm:seq_len={LM_SEQ_LEN}" and "fortunes_lm" in note
    assert language_model_data("cnn", "fortunes") == ("fortunes", "")
    assert language_model_data(MODEL, "fortunes_lm:seq_len=4") == ("fortunes_lm:seq_len=4", "")
    with pytest.raises(ValueError, match="fortunes_lm"):
        language_model_data(MODEL, "fortunes:min_words=3")


def test_dager_recovers_the_victims_sentences_in_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDLEAK_CACHE", str(tmp_path / "cache"))
    config = AuditConfig(model=MODEL, data="fortunes", attacks=("dager",), defenses=(), victims=3,
                         utility_rounds=1, utility_clients=2, utility_samples=64)
    run_audit(config, tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "fortunes_lm" in report["description"] and "next-token accuracy" in report["description"]
    assert f"1 x {LM_SEQ_LEN} tokens = {LM_SEQ_LEN}, below the model width 64" in report["description"]
    (row,) = [r for r in report["leakage"] if r["attack"] == "dager"]
    assert row["status"] == "attacked" and row["leaked"] == 3 and row["exact_sequences"] == 1.0
    texts = row["texts"]
    assert len(texts) == 3 and len({t["original"] for t in texts}) == 3
    assert all(t["exact"] and t["recovered"] == t["original"] and t["original"].strip() for t in texts)
    html = (tmp_path / "out" / "report.html").read_text()
    assert all(f"<td>{escape(t['original'])}</td>" in html for t in texts)
    (utility,) = report["defenses"]
    assert utility["status"] == "trained" and 0 <= utility["accuracy"] <= 1


def test_dager_does_not_apply_to_an_image_model(tmp_path, capsys):
    main(["audit", "--model", "fcnn", "--data", "bundled", "--size", "8x8", "--attacks", "dager",
          "--defense", "none", "--victims", "1", "--utility-rounds", "1", "--utility-clients", "2",
          "--utility-samples", "64", "--out", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (row,) = [r for r in report["leakage"] if r["attack"] == "dager"]
    assert row["status"] == "not applicable" and "text attack" in row["reason"]


def test_no_applicable_manipulation_is_not_called_not_asked():
    from fedleak.audit.verdict import manipulation_answer

    honest = {"model": "honest", "status": "checked", "flagged_by": []}
    skipped = {"model": "trap_weights", "status": "not applicable", "reason": "no bias"}
    assert "No manipulation applies" in manipulation_answer([honest, skipped], [])["text"]
    assert "false alarm" in manipulation_answer([{**honest, "flagged_by": ["architecture"]}, skipped], [])["text"]
    assert "Not asked" in manipulation_answer([], [])["text"]
