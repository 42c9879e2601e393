"""Tables of ``fedleak detect-eval``: detection rate per attack and detector, benign false alarms, overhead.

Each rate is given at the detector's fixed threshold and at a threshold calibrated for the configured false-alarm
rate on the benign client-rounds of the even-numbered clients (reported on the odd-numbered clients only).
"""
from __future__ import annotations

from collections import defaultdict
from statistics import mean

from fedleak.detection.calibration import fit_threshold
from fedleak.detection.chain import PAPER_COLUMNS as DETECTORS
from fedleak.report import ResultsDir


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


def detection_comparison(summaries: list[dict], figures: dict | None = None) -> list:
    """``comparison.md``'s tables for ``fedleak reproduce detection``: per model and attack the warm-up Z-score's
    and D-SNR's detection rates and the benign false alarms and time beside paper 000's claims (§5.3, §6), then,
    when the figures ran (``figures``: :func:`fedleak.experiments.detection_figures.run_figures`' summary), Table 1
    and Figs. 2-3 beside its prose (the text copy of the paper lost Table 1's numbers)."""
    from fedleak.study.paper_tables import P000_DETECTION as PAPER
    from fedleak.report.comparison import Comparison

    rows = []
    for summary in summaries:
        model = summary["model"]
        for attack, entry in sorted(summary["attacks"].items()):
            rows.append([model, f"{attack} ({entry['cells']} checks)", _percent(entry["warmup_zscore"]["rate"]),
                         _percent(entry["dsnr"]["rate"]), PAPER["detection"]])
        benign = summary["benign"].get("warmup_zscore")
        if benign:
            rows.append([model, f"benign: false alarms ({benign['client_rounds']} client-rounds)",
                         _percent(benign["rate"]), _percent(summary["benign"].get("dsnr", {}).get("rate")),
                         PAPER["false_alarms"]])
            low, high = PAPER["warmup_seconds"]
            rows.append([model, "seconds per warm-up check", f"{summary['time']['warmup_zscore']:.2f}",
                         f"{summary['time'].get('dsnr', float('nan')):.2f}", f"{low}-{high} (RTX 4090 GPU)"])
    tables = [Comparison("Detection rate (warm-up Z-score, §5; D-SNR [14] for reference) at the fixed thresholds",
                         ["model", "attack", "warm-up Z (ours)", "D-SNR (ours)", "paper"], rows,
                         ["the paper gives no per-attack rates; its claims are quoted from §5.3 and §6"])]
    if figures:
        table1 = figures["table1_max_z"]
        benign = table1.get("benign")
        fig_rows = [["Table 1: max Z after one warm-up step, " + case, f"{value:.3g}",
                     f"{value / benign:.3g}x benign" if benign else "-", PAPER["table1_malicious_vs_benign"]]
                    for case, value in table1.items() if case != "benign"]
        fig_rows.append(["Table 1: max Z, benign", f"{benign:.3g}", "-",
                         f"largest benign z-mean {PAPER['benign_final_z_mean']} (final step)"])
        fig_rows.append(["Fig. 3: max benign Z over training rounds", f"{figures['fig3_max_benign_z']:.3g}", "-",
                         f"< {PAPER['fig3_benign_max_z_below']:g}"])
        fig_rows.append(["Fig. 2: max D-SNR after Robbing the Fed", f"{figures['dsnr_after_max']:.3g}",
                         f"before: {figures['dsnr_before_max']:.3g}", PAPER["fig2_dsnr_after_robbing"]])
        tables.append(Comparison("Table 1, Figs. 2-3 (ResNet-18)", ["quantity", "ours", "ratio / before", "paper"],
                                 fig_rows, ["paper: ResNet-18 on CIFAR-100; ours: the narrow ResNet-18 of "
                                            "`--figures` on the chosen dataset"]))
    return tables
