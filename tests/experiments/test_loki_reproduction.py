"""``fedleak reproduce loki`` on a small federation: the leak rate in results.json, a rerun that finds it done."""
import json

from fedleak.cli import main


def test_reproduce_loki_writes_the_leak_rate_and_resumes(tmp_path, capsys):
    argv = ["reproduce", "loki", "--quick", "--clients", "3", "--images-per-client", "16", "--local-steps", "4",
            "--bins", "128", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (cell,) = results["rounds"]
    assert cell["images"] == 48 and sorted(cell["per_client"]) == ["0", "1", "2"]
    assert results["leak_rate"] == cell["leak_rate"] >= 0.6  # about (1 - 1/128)^15 = 0.89 expected
    assert results["paper"]["leak_rate_100_clients"] == [0.76, 0.86]
    assert json.loads((tmp_path / "config.json").read_text())["config"]["local_steps"] == 4
    assert (tmp_path / "reconstructions.png").stat().st_size > 0
    assert "paper: 0.76-0.86" in capsys.readouterr().out
    cells = (tmp_path / "rounds.jsonl").read_text()
    assert main(argv) == 0  # a rerun finds the round done
    assert (tmp_path / "rounds.jsonl").read_text() == cells


def test_reproduce_loki_refuses_uneven_local_batches(tmp_path, capsys):
    assert main(["reproduce", "loki", "--quick", "--images-per-client", "10", "--local-steps", "4",
                 "--out", str(tmp_path / "out")]) == 2
    assert "must be a multiple of local_steps" in capsys.readouterr().err
