"""Paper 002 §9.3: trap weights (Algorithm 1) against a user who prunes the smallest-magnitude entries of each
tensor of its update at rate p (gradient sparsification, :func:`fedleak.defenses.pruning.prune_gradients`), scored
exactly (R, §8.1) and near-exactly (the share of inputs whose best candidate reaches 30 dB PSNR).

The paper states qualitatively (after Sun et al.) that pruning prevents perfect extraction while the data stay
recognisable at p = 0.8; we measure R and the near-exact share per p over ``runs`` seeds and state the smallest p
of the grid from which each is 0. Pruning acts on each tensor alone, so pruning the extraction layer's weight and
bias gradients is what pruning the whole update does to them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedleak.data.training_images import load_training_images  # noqa: E402
from fedleak.defenses.pruning import prune_gradients  # noqa: E402
from fedleak.metrics.extraction import NEAR_PSNR, near_key  # noqa: E402
from fedleak.report import ResultsDir  # noqa: E402
from fedleak.report.comparison import Comparison, comparison_markdown  # noqa: E402
from fedleak.report.extraction_figures import study_figures  # noqa: E402
from fedleak.report.plots import leakage_curve, save_figure  # noqa: E402
from fedleak.study.cells import mean_of_runs  # noqa: E402
from fedleak.study.extraction_cells import TrapStudyConfig, trap_cell, vanishing_point  # noqa: E402
from fedleak.study.paper_tables import P002_PRUNING  # noqa: E402


@dataclass
class TrapPruningConfig(TrapStudyConfig):
    """What ``fedleak reproduce pruning`` runs: the FC-NN of Table 7, B = 100, s = 0.7, ``runs`` per rate."""

    rates: tuple[float, ...] = (0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
    near_psnr: float = NEAR_PSNR

    def __post_init__(self):
        if not self.rates or any(not 0 < p < 1 for p in self.rates):
            raise ValueError(f"pruning rates must lie in (0, 1), at least one; got {self.rates}")
        super().__post_init__()
        self.rates = tuple(sorted(self.rates))

    @classmethod
    def quick(cls, **overrides) -> "TrapPruningConfig":
        """3 runs per rate."""
        return cls(**{**dict(runs=3, profile="quick"), **overrides})


def measure(data, config: TrapPruningConfig, rate: float | None, run: int, *, keep: bool = False) -> dict:
    """One cell: a seeded model with trap weights, a random batch, its gradient pruned at ``rate`` (None: not
    pruned), Eq. 5 at the trapped layer, exact and near-exact scores."""
    cell = trap_cell(data, config, run)
    prune = None if rate is None else (lambda update: prune_gradients(update, rate)[0])
    outcome = cell.run(update_defense=prune, scoring={"near_psnr": config.near_psnr}, device=config.device)
    near = near_key(config.near_psnr)
    result = {**{k: outcome.scores[k] for k in ("A", "P", "R", near, "best_psnr")},
              "declared": int(outcome.reconstruction.declared.sum())}
    if keep:
        result["images"] = outcome.shown()
    return result


def _figure(rows: list[dict], near: str, path: Path) -> Path:
    pruned = [r for r in rows if r["p"] is not None]
    fig, axis = plt.subplots(figsize=(5, 3.4))
    leakage_curve(axis, [r["p"] for r in pruned], pruned, near, baseline=rows[0]["R"],
                  baseline_label="not pruned (R)", xlabel="pruning rate p")
    axis.set_ylabel("share of the batch")
    axis.legend(fontsize=7)
    return save_figure(fig, path)


def reproduce_trap_pruning(config: TrapPruningConfig, out: str | Path, *, progress: bool = True,
                           ray: str | None = None) -> dict:
    """Run (or resume) every cell, here or on the Ray cluster at ``ray`` (:func:`fedleak.study.cells.
    run_cells`); write ``table.txt``/``table.csv``, ``summary.json``, ``comparison.md``, ``recall_vs_p.png`` and
    ``extractions.png`` in ``out``; return the rows and the vanishing rates."""
    results = ResultsDir(out, asdict(config))
    data, data_name = load_training_images(config.dataset, config.root, None)
    near = near_key(config.near_psnr)
    rates = (None, *config.rates)
    means = mean_of_runs(measure, {f"p={p}": (p,) for p in rates}, config.runs, results,
                         ("A", "P", "R", near, "best_psnr", "declared"), shared=(data, config), ray=ray,
                         device=config.device, progress=progress, desc="pruning cells")
    rows = [{"p": p, **means[f"p={p}"]} for p in rates]
    pruned = rows[1:]
    exact_gone = vanishing_point([r["p"] for r in pruned], [r["R"] for r in pruned])
    near_gone = vanishing_point([r["p"] for r in pruned], [r[near] for r in pruned])

    def said(p):
        return f"p = {p:g}" if p is not None else f"no p up to {config.rates[-1]:g}"

    lines = [f"Boenisch et al. (paper 002) §9.3: trap weights (s = {config.scale_factor}) under gradient pruning; "
             f"{config.model} {config.model_options} on {data_name}, B = {config.batch_size}, mean of {config.runs} "
             f"runs ({config.profile} profile)", "",
             f"{'p':>6s}   {'A':>5s} {'P':>5s} {'R':>5s} {near:>18s} {'best PSNR':>9s}"]
    for r in rows:
        p = "-" if r["p"] is None else f"{r['p']:g}"
        lines.append(f"{p:>6s}   {r['A']:5.3f} {r['P']:5.3f} {r['R']:5.3f} {r[near]:18.3f} {r['best_psnr']:9.1f}")
    lines += ["", f"exact leakage (R) disappears from {said(exact_gone)}; near-exact leakage ({near}) disappears "
                  f"from {said(near_gone)}"]
    lines.append(study_figures(_figure(rows, near, results.path / "recall_vs_p.png"),
                               lambda p: measure(data, config, p, 0, keep=True)["images"], None, config.rates,
                               [f"p={p:g}" for p in config.rates], setting="p", clean="unpruned",
                               near_psnr=config.near_psnr))
    text = "\n".join(lines) + "\n"
    comparison = Comparison(
        "§9.3: gradient pruning (sparsification) at rate p",
        ["p", "R (ours)", f"{near} (ours)", "best PSNR dB (ours)"],
        [["-" if r["p"] is None else f"{r['p']:g}", r["R"], r[near], round(r["best_psnr"], 1)] for r in rows],
        [f"paper (citing Sun et al.): perfect extraction {P002_PRUNING['exact']}, data still recognisable at p = "
         f"{P002_PRUNING['recognisable_up_to_p']}",
         f"ours: exact leakage gone from {said(exact_gone)}, near-exact leakage gone from {said(near_gone)}"])
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_json("summary.json", {"rows": rows, "exact_vanishes_at_p": exact_gone,
                                        "near_vanishes_at_p": near_gone, "near_key": near})
    results.write_text("comparison.md", comparison_markdown("Paper 002 §9.3 (pruning): ours beside the paper",
                                                            [comparison]))
    return {"text": text, "rows": rows, "exact_vanishes_at_p": exact_gone, "near_vanishes_at_p": near_gone}
