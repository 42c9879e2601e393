"""A results folder: ``config.json`` beside the results, and cells appended to a JSON-lines file as they finish,
so that a rerun skips finished cells (resume)."""
from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any, Iterable

import torch


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


class ResultsDir:
    """One experiment's folder. ``config`` is recorded once; a rerun with a different config is refused so
    results of two configurations never mix in one folder."""

    def __init__(self, path: str | Path, config: dict, *, cells: str = "cells.jsonl"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.cells_path = self.path / cells
        record = {"config": _jsonable(config), "torch": torch.__version__, "python": platform.python_version()}
        config_path = self.path / "config.json"
        if config_path.exists() and self.cells_path.exists():
            previous = json.loads(config_path.read_text())
            if previous.get("config") != record["config"]:
                raise ValueError(
                    f"{config_path} holds a different configuration; use another --out folder or delete it"
                )
        config_path.write_text(json.dumps(record, indent=2) + "\n")

    def finished(self) -> dict[str, dict]:
        """Cells already written, keyed by their ``key``."""
        if not self.cells_path.exists():
            return {}
        done = {}
        for line in self.cells_path.read_text().splitlines():
            if line.strip():
                cell = json.loads(line)
                done[cell["key"]] = cell
        return done

    def add(self, key: str, cell: dict) -> dict:
        """Append one finished cell (flushed at once, so an interrupted run keeps it)."""
        row = {"key": key, **_jsonable(cell)}
        with self.cells_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        return row

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        target.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
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
        target.write_text(text)
        return target
