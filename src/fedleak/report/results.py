"""A results folder: ``config.json`` beside the results, and cells appended to a JSON-lines file as they finish,
so that a rerun skips finished cells (resume).

A folder belongs to one run configuration: a run with another configuration (or of another kind) is refused with
the differing fields of both, before anything is written, unless the folder holds no results at all (a run that
failed before its first result left only ``config.json``): then the corrected rerun takes it over. While a run writes a folder, it holds an exclusive
lock on ``.lock`` (released when the process ends, even when it is killed), so two runs never mix their cells.
Each cell is one ``write`` of one complete line; a line cut off by a kill is set aside (``<cells>.torn``) and
reported on resume, and that cell is simply computed again.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import platform
import warnings
import weakref
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from fedleak.report.comparison import Comparison, comparison_markdown


class ResultsFolderError(ValueError):
    """A results folder that cannot be used by this run: not a folder, not writable, locked by another run, or
    holding another configuration's results. The message names the folder and what is wrong."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


# Locks this process holds: resolved folder -> [file descriptor, number of ResultsDir objects using it]. Within one
# process a folder's lock is shared (an experiment may open its folder twice); other processes are refused.
_HELD: dict[Path, list[int]] = {}


def _acquire(folder: Path) -> Path:
    key = folder.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ResultsFolderError(f"results folder {folder} is being written by another run ({holder}); wait for "
                                 "it to finish or use another --out folder") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {platform.node()}".encode())
    _HELD[key] = [fd, 1]
    return key


def _release(key: Path) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the lock


def check_output_folder(path: str | Path) -> Path:
    """``path`` as a results folder that exists (created if needed) and is writable; otherwise a
    :class:`ResultsFolderError` saying why (a file, no permission, ...)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ResultsFolderError(f"results folder {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ResultsFolderError(f"cannot create results folder {path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ResultsFolderError(f"results folder {path} is not writable")
    return path


def _differences(old: Any, new: Any, *, limit: int = 8) -> str:
    """The fields in which two configs differ, each with both values."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return f"folder's {_short(old)}, this run's {_short(new)}"
    missing = object()
    diffs = [f"{key}: folder's {_short(old.get(key, missing), missing)}, "
             f"this run's {_short(new.get(key, missing), missing)}"
             for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _short(value: Any, missing: Any = None) -> str:
    if missing is not None and value is missing:
        return "(absent)"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _write_atomic(target: Path, text: str) -> None:
    """Write ``target`` through a temporary file and a rename, so that a reader never sees half of it; a failed
    write (a full disk) leaves neither the temporary file nor a changed ``target``."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_BOOKKEEPING = {"config.json", ".lock"}  # what a folder holds before its run wrote any result


class ResultsDir:
    """One experiment's folder. ``config`` is recorded once; a run with a different config is refused (naming
    the fields that differ, with both values) so results of two configurations never mix in one folder. With
    ``resume=False`` the cells of an earlier run of the same config are cleared (a run that is one cell)."""

    def __init__(self, path: str | Path, config: dict, *, cells: str = "cells.jsonl", resume: bool = True):
        self.path = check_output_folder(path)
        self._key = _acquire(self.path)
        self._finalizer = weakref.finalize(self, _release, self._key)
        try:
            self._open(config, cells, resume)
        except BaseException:
            self.close()
            raise

    def _open(self, config: dict, cells: str, resume: bool) -> None:
        self.cells_path = self.path / cells
        record = {"config": _jsonable(config), "torch": torch.__version__, "python": platform.python_version()}
        config_path = self.path / "config.json"
        if config_path.exists():
            try:
                previous = json.loads(config_path.read_text())
            except (ValueError, UnicodeDecodeError) as error:
                raise ResultsFolderError(f"{config_path} is not valid JSON ({error}); use another --out folder "
                                         "or delete it") from None
            old = previous.get("config") if isinstance(previous, dict) else previous
            if old != record["config"] and self._holds_results():
                raise ResultsFolderError(
                    f"{self.path} holds the results of another run configuration; differences: "
                    f"{_differences(old, record['config'])}. Use another --out folder, or delete {self.path}")
        if not resume:
            self.cells_path.unlink(missing_ok=True)
        self._done = self._read_cells()
        _write_atomic(config_path, json.dumps(record, indent=2) + "\n")

    def _holds_results(self) -> bool:
        """Whether the folder holds anything but its bookkeeping and empty files (any result of any run)."""
        return any(p.name not in _BOOKKEEPING and (p.is_dir() or p.stat().st_size > 0) for p in self.path.iterdir())

    def close(self) -> None:
        """Release the folder's lock (also done when the object is collected or the process ends)."""
        self._finalizer()

    def __enter__(self) -> "ResultsDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_cells(self) -> dict[str, dict]:
        """Cells already written, keyed by their ``key``; a cut-off last line is moved to ``<cells>.torn`` and
        reported with a warning, a broken line elsewhere is an error naming the file and line."""
        if not self.cells_path.exists():
            return {}
        raw = self.cells_path.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        done = {}
        for number, line in enumerate(lines, start=1):
            if line.strip():
                cell = self._parse(line)
                if cell is None:
                    raise ResultsFolderError(f"{self.cells_path} line {number} is not a JSON cell; fix or delete "
                                             "that line to resume")
                done[cell["key"]] = cell
        if tail.strip():
            cell = self._parse(tail)
            if cell is not None:  # complete but for its newline
                with self.cells_path.open("ab") as handle:
                    handle.write(b"\n")
                done[cell["key"]] = cell
            else:
                torn = self.cells_path.with_name(self.cells_path.name + ".torn")
                with torn.open("ab") as handle:
                    handle.write(tail + b"\n")
                os.truncate(self.cells_path, len(raw) - len(tail))
                warnings.warn(f"{self.cells_path}: its last line ({len(tail)} bytes) was cut off, probably by a "
                              f"killed run; moved it to {torn.name} and that cell will be computed again",
                              stacklevel=3)
        return done

    @staticmethod
    def _parse(line: bytes) -> dict | None:
        try:
            cell = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None
        return cell if isinstance(cell, dict) and "key" in cell else None

    def finished(self) -> dict[str, dict]:
        """Cells already written, keyed by their ``key``."""
        return dict(self._done)

    def __contains__(self, key: str) -> bool:
        return key in self._done

    def add(self, key: str, cell: dict) -> dict:
        """Append one finished cell in a single write of a whole line (an interrupted run keeps it). A key that is
        already finished is not written again: the recorded cell is returned."""
        if key in self._done:
            return self._done[key]
        row = {"key": key, **_jsonable(cell)}
        data = (json.dumps(row) + "\n").encode()
        fd = os.open(self.cells_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (full disk, signal): finish the line
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)
        self._done[key] = row
        return row

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        _write_atomic(target, json.dumps(_jsonable(data), indent=2) + "\n")
        return target

    def write_csv(self, name: str, rows: Iterable[dict]) -> Path:
        rows = list(rows)
        target = self.path / name
        with target.open("w", newline="") as handle:
            if rows:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        _write_atomic(target, text)
        return target

    def write_report(self, summary: dict, text: str, heading: str, comparisons: Sequence[Comparison]) -> dict:
        """A reproduction's report: ``summary`` as results.json, its printed ``text`` as table.txt, and the
        ``comparisons`` with the paper under ``heading`` as comparison.md; returns the run's result, the summary
        with its ``"text"``."""
        self.write_json("results.json", summary)
        self.write_text("table.txt", text)
        self.write_text("comparison.md", comparison_markdown(heading, comparisons))
        return {"text": text, **summary}
