"""The seeded figures of the reproductions that must not move when the code is reorganised (issue 19).

    python benchmarks/seeded_figures.py run --out DIR        # runs the five commands below into DIR/<name>
    python benchmarks/seeded_figures.py compare OLD NEW      # every figure of OLD beside NEW, the largest difference

A figure is every number in the JSON files a command writes (its results, cells and reports), except the ones that
measure time or name the machine; `compare` prints each one that differs and exits 1 when any differs by more than
floating-point rounding (relative 1e-6, absolute 1e-9).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

COMMANDS = {
    "demo": ["demo"],
    "trap-weights": ["reproduce", "trap-weights", "--quick", "--tables", "5"],
    "loki": ["reproduce", "loki", "--quick"],
    "defenses-dp": ["reproduce", "defenses-dp", "--quick"],
    "first-contact": ["detect-eval", "--quick", "--first-contact"],
}
# words of the keys whose numbers measure the run, not the result ("extraction ms", "fwd_bwd_s", "check seconds")
VOLATILE = {"second", "seconds", "time", "times", "wall", "elapsed", "duration", "cpu", "date", "version", "host",
            "pid", "started", "finished", "timestamp", "threads", "peak", "memory", "rss", "s", "ms",
            "relative_to_local_epoch"}


def _volatile(key: str) -> bool:
    """Whether ``key`` names a measurement of the run: one of its words (split at anything but letters) is in
    :data:`VOLATILE`, or the whole key is. Whole words: "updates" holds "date" and "victims" holds "ms"."""
    key = key.lower()
    return key in VOLATILE or any(word in VOLATILE for word in re.findall(r"[a-z]+", key))


def _numbers(value, prefix: str, out: dict, folder: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not _volatile(str(key)):
                _numbers(item, f"{prefix}.{key}", out, folder)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _numbers(item, f"{prefix}[{i}]", out, folder)
    elif isinstance(value, str):  # paths name the results folder, which differs between the runs compared
        out[prefix] = value.replace(folder, "<out>")
    elif isinstance(value, bool) or value is None:
        out[prefix] = value
    elif isinstance(value, (int, float)):
        out[prefix] = float(value)


def figures(folder: Path) -> dict:
    out: dict = {}
    for path in sorted(folder.rglob("*.json")) + sorted(folder.rglob("*.jsonl")):
        rel = str(path.relative_to(folder))
        if path.suffix == ".jsonl":
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            # cells are keyed by name; their order on disk is the order they finished
            lines.sort(key=lambda row: json.dumps(row.get("key", row), sort_keys=True, default=str))
            _numbers(lines, rel, out, str(folder))
        else:
            _numbers(json.loads(path.read_text()), rel, out, str(folder))
    return out


def run(out: Path, only: list[str]) -> None:
    fedleak = Path(sys.executable).with_name("fedleak")
    for name, args in COMMANDS.items():
        if only and name not in only:
            continue
        target = out / name
        print(f"== {name}: fedleak {' '.join(args)} --out {target}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        subprocess.run([str(fedleak), *args, "--out", str(target)], check=True, env=env)


def compare(old: Path, new: Path) -> int:
    worst, moved = 0.0, 0
    for name in COMMANDS:
        a, b = figures(old / name), figures(new / name)
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key, "<absent>"), b.get(key, "<absent>")
            if isinstance(x, float) and isinstance(y, float):
                if math.isnan(x) and math.isnan(y):
                    continue
                diff = abs(x - y)
                worst = max(worst, diff)
                if diff > 1e-9 + 1e-6 * max(abs(x), abs(y)):
                    moved += 1
                    print(f"{name}: {key}: {x} -> {y}")
            elif x != y:
                moved += 1
                print(f"{name}: {key}: {x!r} -> {y!r}")
        print(f"{name}: {len(a)} figures before, {len(b)} after")
    print(f"largest absolute difference {worst:.3g}; {moved} figures moved beyond rounding")
    return 1 if moved else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--only", nargs="*", default=[], choices=list(COMMANDS))
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.only)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
