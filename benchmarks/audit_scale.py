"""The ``--quick`` audit at the scale of real models (issue 26): wall time and peak memory of
``fedleak audit --model M --data skimage_photos --quick`` for the registry ResNet-18 with group norm and the
registry ViT, each in its own process (target: each <= 5 minutes and <= 4 GB on 2 cores). ``cpu_seconds`` (user +
system time of the child and its reaped descendants) is what a loaded machine's wall time cannot show: at one thread
it is close to the wall time the audit would take alone on its cores.

Peak memory is the peak resident set size of the audit's process and of any process it waited for (``os.wait4``
on the child: Linux folds its reaped descendants' peak into it), not a Python-heap figure. Each model runs in a fresh
process with one thread (``OMP_NUM_THREADS=1`` unless set), into a temporary folder (no resume).

    python benchmarks/audit_scale.py [--json] [--models resnet18:norm=group,vit_small] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODELS = ("resnet18:norm=group", "vit_small")
DATA = "skimage_photos"
TARGET_SECONDS, TARGET_GB = 300.0, 4.0


def one(model: str, out: str) -> dict:
    """Run the quick audit of ``model`` in this process; its cells and what the plan left out."""
    from fedleak.audit import AuditConfig, run_audit

    report = run_audit(AuditConfig.quick_profile(model=model, data=DATA), out, progress=False)
    ran = [r for r in report["leakage"] if r["status"] == "attacked"]
    return {"cells_run": len(ran) + len(report["defenses"]),
            "leak_cells": {f"{r['attack']}/{r['defense']}": round(r.get("seconds", 0.0), 1) for r in ran},
            "left_out": len(report["coverage"]["left_out"]),
            "skipped_early": [c["cell"] for c in report["coverage"]["left_out"] if c["status"].startswith("skipped")],
            "strongest": {s["defense"]: s["attack"] for s in report["coverage"]["strongest"]},
            "leaks": report["verdict"]["leak"]["leaks"]}


def measure(model: str) -> dict:
    """Run :func:`one` in a child process: its wall time and peak RSS (the child and its reaped descendants)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--one", model, "--out", out], env=env,
                                 stdout=subprocess.PIPE, text=True)
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"audit of {model} failed (exit {os.waitstatus_to_exitcode(status)})")
    peak_gb = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime  # the wall time of an unloaded machine at one thread, near enough
    return {"model": model, "data": DATA, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "peak_rss_gb": round(peak_gb, 3),
            "within_target": seconds <= TARGET_SECONDS and peak_gb <= TARGET_GB,
            **json.loads(stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model specs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per model")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.out)))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    runs = [measure(m) for m in args.models.split(",") for _ in range(args.repeat)]
    result = {"target": {"seconds": TARGET_SECONDS, "peak_rss_gb": TARGET_GB}, "cpus": os.cpu_count(),
              "threads": os.environ.get("OMP_NUM_THREADS", "1"), "runs": runs}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for r in runs:
            print(f"{r['model']:>24}: {r['seconds']:7.1f} s ({r['cpu_seconds']:.1f} CPU-s), peak RSS {r['peak_rss_gb']:.2f} GB "
                  f"({'within' if r['within_target'] else 'over'} target), {r['cells_run']} cells run, "
                  f"{len(r['skipped_early'])} settled early, strongest {r['strongest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
