"""``fedleak audit --threat malicious --quick`` on a zoo of ordinary models (``benchmarks/ordinary_zoo.py``):
does each finish with a verdict, how long does it take and how much memory does it need?

Each model runs in its own process (``fedleak audit`` as a user runs it), images on ``bundled`` (1x32x32), the
text model on ``fortunes``; ``ok`` means exit code 0 and a ``report.json`` with a verdict. ``peak_mb`` is the
child's peak resident memory (``ru_maxrss``). Target (issue 20): <= 3 min and <= 2 GB per model on 2 CPU cores.

    python benchmarks/audit_zoo.py [--models mlp,resnet] [--out results/audit_zoo] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ordinary_zoo import TEXT, ZOO  # noqa: E402

# fedleak's CLI in the child, which then reports its own peak resident memory (KiB) on its last stderr line
CHILD = ("import resource, sys\nfrom fedleak.cli import main\ntry:\n    code = main(sys.argv[1:])\nfinally:\n"
         "    print(f'peak_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
         "raise SystemExit(code)")
# the ten models of issue 20's measurement (the zoo's other models run with --models)
MODELS = ("tutorial_net", "mlp", "sequential_mlp", "module_activations", "containers", "groupnorm_cnn",
          "mobilenet_v2", "resnet", "lenet5", "text")



def audit(name: str, out: Path, timeout: float) -> dict:
    """One model's malicious quick audit in a child process: ok, seconds, peak_mb, and the verdict's answers."""
    folder = out / name
    argv = [sys.executable, "-c", CHILD, "audit", "--model", f"{HERE / 'ordinary_zoo.py'}:{ZOO[name].__name__}",
            "--data", "fortunes" if name in TEXT else "bundled", "--threat", "malicious", "--quick", "--out", str(folder)]
    start = time.perf_counter()
    peak = None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        lines = (done.stderr or "").strip().splitlines()
        if lines and lines[-1].startswith("peak_kb "):
            peak = int(lines.pop().split()[1])
        code, tail = done.returncode, [line for line in lines if "error" in line.lower()][-1:] or lines[-1:]
    except subprocess.TimeoutExpired:
        code, tail = None, [f"timed out after {timeout:.0f} s"]
    seconds = time.perf_counter() - start
    row = {"name": name, "ok": False, "seconds": round(seconds, 1), "peak_mb": None if peak is None
           else round(peak / 1024)}
    report = folder / "report.json"
    if code == 0 and report.is_file():
        verdict = json.loads(report.read_text()).get("verdict")
        row["ok"] = verdict is not None
        if verdict:
            row["verdict"] = {k: verdict[k]["text"] for k in ("leak", "defense", "manipulations")}
            row["warnings"] = verdict["warnings"]
    else:
        row["error"] = " ".join(tail)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated models of benchmarks/ordinary_zoo.py (default: the ten of issue 20)")
    parser.add_argument("--out", default="results/audit_zoo", help="audit folders, one per model")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per model before giving up")
    parser.add_argument("--json", action="store_true", help='print {"models": [...]} as JSON')
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        parser.error(f"unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(ZOO)}")
    rows = []
    for name in names:
        rows.append(audit(name, Path(args.out), args.timeout))
        if not args.json:
            r = rows[-1]
            print(f"{name:>20}: {'ok' if r['ok'] else 'FAILED'} {r['seconds']:7.1f} s {r['peak_mb'] or '?':>6} MB "
                  f"{r.get('error', '')}", flush=True)
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
