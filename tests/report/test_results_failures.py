"""A run that fails leaves nothing in the way (issue 22): a full disk while writing a report is one line and leaves
no temporary file; a run that failed before its first result does not make its folder refuse the corrected rerun;
a seed beyond 64 bits is refused by every command in one line naming --seed."""
import argparse
import errno
import json
from pathlib import Path

import pytest

from fedleak.cli import build_parser, main
from fedleak.report import ResultsDir
from fedleak.report.results import ResultsFolderError


def _disk_full_after(limit):
    real = Path.write_text

    def write_text(self, text, *args, **kwargs):
        real(self, text[:limit], *args, **kwargs)  # part of it reached the disk, then the disk was full
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    return write_text


def test_a_full_disk_leaves_no_temporary_file_and_keeps_the_old_report(tmp_path, monkeypatch):
    with ResultsDir(tmp_path, {"seed": 0}) as results:
        results.write_text("report.html", "<p>the old report</p>")
        monkeypatch.setattr(Path, "write_text", _disk_full_after(10))
        with pytest.raises(OSError, match="No space left"):
            results.write_text("report.html", "<p>the new report</p>" * 1000)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.json", "report.html"]
    assert (tmp_path / "report.html").read_text() == "<p>the old report</p>"


def test_a_full_disk_is_one_line_from_the_command(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(Path, "write_text", _disk_full_after(10))
    assert main(["train", "--rounds", "1", "--clients", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fedleak train: error writing ") and "No space left on device" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_folder_without_results_is_taken_over_by_the_corrected_rerun(tmp_path):
    ResultsDir(tmp_path, {"lr": float("nan")}).close()  # the failed run: config written, then an error
    with ResultsDir(tmp_path, {"lr": 0.1}) as rerun:
        rerun.add("cell", {"accuracy": 0.5})
    assert json.loads((tmp_path / "config.json").read_text())["config"] == {"lr": 0.1}
    with pytest.raises(ResultsFolderError, match="another run configuration"):  # now it holds results
        ResultsDir(tmp_path, {"lr": 0.2})


def _seeded(parser, words=()):
    """(command words, parser) of every (sub-)command that takes --seed."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _seeded(sub, (*words, name))
        elif "--seed" in action.option_strings:
            yield words, parser


def test_a_seed_beyond_64_bits_is_refused_by_every_command_naming_seed(capsys):
    commands = [words for words, _ in _seeded(build_parser())]
    assert len(commands) >= 5
    for words in commands:
        with pytest.raises(SystemExit) as exit:
            main([*words, "--seed", str(2**64)])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and "argument --seed: must be an integer from 0 to 2**63 - 1" in err, words
