"""What the audit ran and what it did not, in plain words: the strongest attack behind each defense (and why it
ranks first, :mod:`fedleak.audit.strongest`), the cells settled early (:mod:`fedleak.audit.early_stop`), and what
the ``--quick`` profile leaves out against the full audit."""
from __future__ import annotations

from typing import Sequence

from fedleak.attacks import PRESETS
from fedleak.audit.config import AuditConfig
from fedleak.audit.early_stop import SKIPPED
from fedleak.audit.plan import QUICK_SKIP, Cell

FULL = AuditConfig(model="", data="")  # the full profile's defaults, to say what --quick shortens


def strongest(cells: Sequence[Cell]) -> list[dict]:
    """Per defense, the attack ranked first among those that apply, and why."""
    found = {}
    for cell in cells:
        if cell.kind == "leak" and cell.rank == 0 and not cell.reason:
            found.setdefault(cell.defense, {"defense": cell.defense, "attack": cell.attack, "why": cell.why})
    return list(found.values())


def quick_gaps(config: dict) -> list[str]:
    """What the ``--quick`` profile of ``config`` does not cover, against the full audit's defaults."""
    if not config.get("quick"):
        return []
    gaps = []
    if config.get("iterations") is not None:
        full = max(p.max_iterations for p in PRESETS.values())
        gaps.append(f"Inversions ran {config['iterations']} iterations, not each preset's full schedule (up to "
                    f"{full:,}): an inversion's leak is a lower bound, and 'no sample leaked' holds for this budget "
                    "only.")
    if config["victims"] < FULL.victims:
        gaps.append(f"{config['victims']} victims per attacked round instead of {FULL.victims}.")
    utility = (f"{config['utility_rounds']} FedAvg rounds of {config['utility_clients']} clients"
               + (f" on at most {config['utility_samples']} training samples" if config.get("utility_samples") else ""))
    gaps.append(f"Each defense's accuracy comes from {utility} (full audit: {FULL.utility_rounds} rounds of "
                f"{FULL.utility_clients} clients on all samples): it shows whether a defense stops learning, not "
                "a trained model's accuracy.")
    return gaps


def coverage(cells: Sequence[Cell], results: dict[str, dict], config: dict) -> dict:
    """The report's ``coverage``: ``strongest`` per defense, the leak cells ``left_out`` (by --quick, or settled
    early, with the reason) and the ``quick`` profile's gaps."""
    left = []
    for cell in cells:
        result = results.get(cell.key, {})
        if cell.status == QUICK_SKIP and cell.reason:
            left.append({"cell": cell.label, "status": QUICK_SKIP, "reason": cell.reason})
        elif result.get("status") == SKIPPED:
            left.append({"cell": cell.label, "status": f"{SKIPPED} ({result['settled']})",
                         "reason": result["reason"]})
    return {"strongest": strongest(cells), "left_out": left, "quick": quick_gaps(config)}


def summary(report_coverage: dict) -> str:
    """One paragraph: which attacks ran first and how many cells were left out."""
    parts = [f"behind {s['defense']}: {s['attack']} ({s['why']})" for s in report_coverage["strongest"]]
    text = ("Strongest attack that applies, " + "; ".join(parts) + ".") if parts else ""
    quick = sum(1 for c in report_coverage["left_out"] if c["status"] == QUICK_SKIP)
    early = len(report_coverage["left_out"]) - quick
    if quick or early:
        text += (f" Not run: {quick} inversion cell(s) left out by --quick, {early} cell(s) whose answer was "
                 "already settled (see 'What this audit did not cover').")
    return text.strip()
