"""Table 4 of paper 001 (Scheliga et al. §5.3, §6.1): every combination of Dropout (DO), DP-SGD (DP), gradient
pruning (GP) and one privacy module (PM: PRECODE "P" or CVB "C"), 24 rows, each scored for privacy (CDIA's SSIM
and ASR, IG for reference) and utility (FedAvg accuracy, epsilon under DP-SGD); the cells are those of
:mod:`fedleak.study.ablation`. Writes ``table.txt``/``table.csv`` beside the cells.
"""
from __future__ import annotations

from pathlib import Path

from fedleak.study.ablation import AblationConfig, ablation_table


def format_table(table: list[dict]) -> str:
    headers = list(table[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in table)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers) for r in table]
    return "\n".join(lines)


def run_ablation(config: AblationConfig, out: str | Path, *, progress: bool = True,
                 ray: str | None = None) -> list[dict]:
    """Run (or resume) the selected rows (:func:`fedleak.study.ablation.ablation_table`); write ``cells.jsonl``,
    ``table.txt``/``table.csv`` and ``reconstructions.png`` in ``out``; return the table rows."""
    results, table = ablation_table(config, out, progress=progress, ray=ray)
    results.write_text("table.txt", format_table(table) + "\n")
    results.write_csv("table.csv", table)
    return table
