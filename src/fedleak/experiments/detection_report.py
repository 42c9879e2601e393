"""Tables of ``fedleak detect-eval``: detection rate per attack and detector, benign false alarms, overhead.

Each rate is given at the detector's fixed threshold and at a threshold calibrated for the configured false-alarm
rate on the benign client-rounds of the even-numbered clients (reported on the odd-numbered clients only).
"""
from __future__ import annotations

from collections import defaultdict
from statistics import mean

from fedleak.detection.calibration import fit_threshold
from fedleak.report import ResultsDir

DETECTORS = ("architecture", "filter_ratio", "dsnr", "warmup_zscore", "warmup_zscore+rounds")


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def summarize_cells(cells: list[dict], config) -> dict:
    """Rates, thresholds and timings from the cells of one model's evaluation."""
    benign = [c for c in cells if c.get("kind") == "benign"]
    malicious = [c for c in cells if c.get("kind") == "malicious"]
    skipped = {f"{c['attack']} {c['setting']}": c["reason"] for c in cells if c.get("kind") == "n/a"}
    summary = {"model": config.model, "dataset": config.dataset, "benign": {}, "attacks": {}, "time": {},
               "not_applicable": skipped}
    calibrated = {}
    for name in DETECTORS:
        rows = [c["detectors"][name] for c in benign if name in c["detectors"]]
        if not rows:
            continue
        fit = [c["detectors"][name]["score"] for c in benign if c["client"] % 2 == 0 and name in c["detectors"]]
        held_out = [c["detectors"][name]["score"] for c in benign if c["client"] % 2 == 1 and name in c["detectors"]]
        calibration = fit_threshold(fit, config.false_alarm_rate) if fit else None
        calibrated[name] = calibration.threshold if calibration else None
        summary["benign"][name] = {
            "client_rounds": len(rows), "false_alarms": sum(r["flagged"] for r in rows),
            "rate": _rate([r["flagged"] for r in rows]), "max_score": max(r["score"] for r in rows),
            "threshold": rows[0]["threshold"],
            "calibrated_threshold": calibrated[name],
            "calibrated_rate": _rate([s > calibrated[name] for s in held_out]) if calibration else None,
            "calibrated_client_rounds": len(held_out)}
        summary["time"][name] = mean(r["seconds"] for r in rows)
    epoch = mean(c["train_seconds"] for c in benign) if benign else None
    summary["time"]["local_epoch"] = epoch
    summary["time"]["share_of_epoch"] = {n: summary["time"][n] / epoch for n in DETECTORS
                                         if n in summary["time"] and epoch}
    by_attack = defaultdict(list)
    for cell in malicious:
        by_attack[cell["attack"]].append(cell)
    for attack, group in by_attack.items():
        entry = {"cells": len(group), "settings": sorted({c["setting"] for c in group}),
                 "rounds": sorted({c["round"] for c in group})}
        for name in DETECTORS:
            rows = [c for c in group if name in c["detectors"]]
            odd = [c["detectors"][name]["score"] for c in rows if c["client"] % 2 == 1]
            threshold = calibrated.get(name)
            entry[name] = {
                "rate": _rate([c["detectors"][name]["flagged"] for c in rows]),
                "calibrated_rate": _rate([s > threshold for s in odd]) if threshold is not None else None,
                "median_score": sorted(c["detectors"][name]["score"] for c in rows)[len(rows) // 2] if rows else None}
        summary["attacks"][attack] = entry
    return summary


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def table_rows(summary: dict) -> list[str]:
    """Markdown rows (no header) for one model: one per attack, then false alarms and overhead."""
    rows = []
    model = summary["model"]
    for attack, entry in sorted(summary["attacks"].items()):
        cells = [f"{_percent(entry[n]['rate'])} ({_percent(entry[n]['calibrated_rate'])})" for n in DETECTORS]
        rows.append(f"| {model} | {attack} ({entry['cells']} checks) | " + " | ".join(cells) + " |")
    benign = summary["benign"]
    if benign:
        n = max(b["client_rounds"] for b in benign.values())
        cells = [f"{_percent(benign[d]['rate'])} ({_percent(benign[d]['calibrated_rate'])})" if d in benign else "–"
                 for d in DETECTORS]
        rows.append(f"| {model} | **benign: false alarms** ({n} client-rounds) | " + " | ".join(cells) + " |")
        share = summary["time"]["share_of_epoch"]
        cells = [f"{summary['time'][d]:.2f}s = {100 * share[d]:.0f}%" if d in share else "–" for d in DETECTORS]
        rows.append(f"| {model} | time per check = share of one local epoch "
                    f"({summary['time']['local_epoch']:.2f}s) | " + " | ".join(cells) + " |")
    return rows


def table_header() -> list[str]:
    return ["| model | attack | " + " | ".join(DETECTORS) + " |", "|---|---|" + "---|" * len(DETECTORS)]


def write_report(results: ResultsDir, summary: dict, config) -> None:
    """``summary.json`` and ``table.md`` (rate at the fixed threshold, in brackets at the calibrated one)."""
    results.write_json("summary.json", summary)
    notes = [f"- {k}: not applicable ({v})" for k, v in sorted(summary["not_applicable"].items())]
    text = "\n".join([
        f"Detection rate per attack and detector: fixed threshold (calibrated for {config.false_alarm_rate:.0%} "
        f"false alarms on even clients, reported on odd clients).", "", *table_header(), *table_rows(summary),
        "", *notes, ""])
    results.write_text("table.md", text)
