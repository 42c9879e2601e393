"""Results folders lose nothing (issue 13): one run at a time, one configuration per folder, whole cells only,
no duplicate cells on a rerun."""
import fcntl
import json

import pytest

from fedleak.report import ResultsDir, ResultsFolderError


def test_a_folder_is_locked_while_a_run_writes_it(tmp_path):
    with open(tmp_path / ".lock", "w") as other:  # another process's run holds the folder
        other.write("pid 4242 on elsewhere")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ResultsFolderError, match=r"being written by another run \(pid 4242 on elsewhere\)"):
            ResultsDir(tmp_path, {"seed": 1})
        assert not (tmp_path / "config.json").exists()
    with ResultsDir(tmp_path, {"seed": 1}) as results:  # released: this run may write it now
        results.add("a", {"value": 1})
        with open(tmp_path / ".lock") as probe, pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for other processes while it runs
    with open(tmp_path / ".lock") as probe:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and released by close()


def test_another_configuration_is_refused_naming_both_and_nothing_is_overwritten(tmp_path):
    with ResultsDir(tmp_path, {"seed": 0, "seeds": [0], "rows": "all"}) as ablation:
        ablation.add("privacy:none", {"ssim": 0.5})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ResultsFolderError, match=r"seed: folder's 0, this run's 1; seeds: folder's \[0\], "
                                                 r"this run's \[1\]"):
        ResultsDir(tmp_path, {"seed": 1, "seeds": [1], "rows": "all"})
    with pytest.raises(ResultsFolderError, match=r"federation: folder's \(absent\), this run's"):
        ResultsDir(tmp_path, {"federation": {"model": "cnn"}, "fl": {"rounds": 10}}, cells="rounds.jsonl",
                   resume=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    with ResultsDir(tmp_path, {"seed": 0, "seeds": [0], "rows": "all"}) as resumed:  # the owner still resumes
        assert list(resumed.finished()) == ["privacy:none"]


def test_a_cut_off_last_line_is_set_aside_and_reported(tmp_path):
    with ResultsDir(tmp_path, {"seed": 0}) as results:
        results.add("a", {"value": 1})
        results.add("b", {"value": 2})
    cells = tmp_path / "cells.jsonl"
    cells.write_bytes(cells.read_bytes()[:-7])  # killed in the middle of writing cell b
    with pytest.warns(UserWarning, match=f"{cells}: its last line .* cut off"):
        results = ResultsDir(tmp_path, {"seed": 0})
    assert list(results.finished()) == ["a"]
    assert (tmp_path / "cells.jsonl.torn").read_text().startswith('{"key": "b"')
    results.add("b", {"value": 2})
    results.close()
    assert [json.loads(line)["key"] for line in cells.read_text().splitlines()] == ["a", "b"]
    cells.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')  # damage that is not a kill: refuse, naming it
    with pytest.raises(ResultsFolderError, match=f"{cells} line 2 is not a JSON cell"):
        ResultsDir(tmp_path, {"seed": 0})


def test_a_rerun_never_appends_a_duplicate_cell(tmp_path):
    for _ in range(2):
        with ResultsDir(tmp_path, {"seed": 0}) as results:
            first = results.add("round1/client0", {"score": 1.0})
            again = results.add("round1/client0", {"score": 2.0})
            assert again == first and "round1/client0" in results
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 1


def test_output_that_is_a_file_or_unwritable_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsFolderError, match="is a file, not a folder"):
        ResultsDir(tmp_path / "file", {})
    with pytest.raises(ResultsFolderError, match="cannot create results folder /sys/fedleak-results: "):
        ResultsDir("/sys/fedleak-results", {})  # sysfs: nobody, root included, may create folders there
