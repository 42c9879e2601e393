"""Paper 002 §9 and Fig. 4: trap weights (Algorithm 1) against users who clip their per-sample gradients (the
clipping of DP-SGD, done at the users' end in today's DP-FL, §9.1) and then add local Gaussian noise (local DP,
§9.2), on a batch of B inputs, scored exactly (R, §8.1) and near-exactly (the share of inputs whose best candidate
reaches 30 dB PSNR, :mod:`fedleak.metrics.extraction`).

Part (a), clipping alone: per-sample clipping at each ``clips`` threshold, no noise. Part (b), local DP: clipping at
``noise_clip`` (the paper's c = 1.0) and noise N(0, sigma^2 c^2) added to the sum of the clipped gradients before the
mean (:class:`fedleak.defenses.dp.DPSGD`), for each sigma of ``sigmas``. Deviation from the paper: Fig. 4 shows one
MNIST point qualitatively; we measure a batch (B = 100 by default) over ``runs`` seeds and state the smallest sigma of
the grid from which no input is recovered, exactly and near-exactly. A looser share (``loose_psnr``, 20 dB: a noisy
but often recognisable image) shows how far below 30 dB the images fade.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fedleak.data.training_images import load_training_images  # noqa: E402
from fedleak.defenses.dp import DPSGD  # noqa: E402
from fedleak.metrics.extraction import NEAR_PSNR, near_key  # noqa: E402
from fedleak.report import ResultsDir  # noqa: E402
from fedleak.report.comparison import Comparison, comparison_markdown  # noqa: E402
from fedleak.report.extraction_figures import study_figures  # noqa: E402
from fedleak.report.plots import leakage_curve, save_figure  # noqa: E402
from fedleak.seeds import run_seed  # noqa: E402
from fedleak.study.cells import mean_of_runs  # noqa: E402
from fedleak.study.extraction_cells import TrapStudyConfig, trap_cell, vanishing_point  # noqa: E402
from fedleak.study.paper_tables import P002_DP  # noqa: E402


@dataclass
class TrapDPConfig(TrapStudyConfig):
    """What ``fedleak reproduce dp`` runs. The full profile uses the FC-NN of Table 7; :meth:`quick` a narrow one
    (per-sample gradients of the full FC-NN take B x 21M floats)."""

    clips: tuple[float, ...] = (10.0, 1.0, 0.1, 0.01)
    noise_clip: float = 1.0
    sigmas: tuple[float, ...] = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    near_psnr: float = NEAR_PSNR
    loose_psnr: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        bad = [v for v in (*self.clips, self.noise_clip) if not (math.isfinite(v) and v > 0)]
        if bad or any(not (math.isfinite(s) and s > 0) for s in self.sigmas) or not self.sigmas:
            raise ValueError(f"clipping thresholds and sigmas must be finite and > 0 (and at least one sigma); got "
                             f"clips {self.clips}, noise_clip {self.noise_clip}, sigmas {self.sigmas}")
        self.sigmas = tuple(sorted(self.sigmas))

    @classmethod
    def quick(cls, **overrides) -> "TrapDPConfig":
        """3 runs per cell on a one-hidden-layer FC-NN of 1000 + 64 neurons (a few minutes on 2 CPU cores)."""
        base = dict(runs=3, model_options={"widths": (1000, 64)}, profile="quick")
        return cls(**{**base, **overrides})


def _cells_of(config: TrapDPConfig) -> list[tuple[str, float | None, float]]:
    """(part, clip, sigma): the undefended baseline, clipping alone, then local DP."""
    return ([("none", None, 0.0)] + [("clipping", c, 0.0) for c in config.clips]
            + [("local_dp", config.noise_clip, s) for s in config.sigmas])


def _key(part: str, clip: float | None, sigma: float) -> str:
    return f"{part}/clip={clip}/sigma={sigma:g}"


def measure(data, config: TrapDPConfig, clip: float | None, sigma: float, run: int, *, keep: bool = False) -> dict:
    """One cell: a seeded model with trap weights, a random batch, the user's clipped (and noised) gradient,
    Eq. 5 at the trapped layer, exact and near-exact scores."""
    cell = trap_cell(data, config, run)
    gradient_fn = None
    if clip is not None:
        noise = torch.Generator(device=config.device).manual_seed(run_seed(config.seed, run) + 1)
        gradient_fn = DPSGD(clip, sigma, noise)
    outcome = cell.run(gradient_fn=gradient_fn, scoring={"near_psnr": config.near_psnr}, device=config.device)
    near = near_key(config.near_psnr)
    x, shown, best_psnr = outcome.shown()
    loose = float((best_psnr >= config.loose_psnr).float().mean())
    result = {**{k: outcome.scores[k] for k in ("A", "P", "R", near, "best_psnr")}, near_key(config.loose_psnr): loose,
              "declared": int(outcome.reconstruction.declared.sum())}
    if keep:
        result["images"] = (x, shown, best_psnr)
    return result


def _recall_figure(rows: list[dict], near: str, path: Path) -> Path:
    clipping = [r for r in rows if r["part"] == "clipping"]
    noisy = [r for r in rows if r["part"] == "local_dp"]
    base = next(r for r in rows if r["part"] == "none")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for axis, part, x_name in ((left, clipping, "clip"), (right, noisy, "sigma")):
        leakage_curve(axis, [r[x_name] for r in part], part, near, baseline=base["R"],
                      baseline_label="no defense (R)", xlabel=x_name, log_x=True)
    left.set_ylabel("share of the batch")
    left.set_title("(a) clipping alone")
    right.set_title(f"(b) local DP, clip c = {noisy[0]['clip']}" if noisy else "(b) local DP")
    right.legend(fontsize=7)
    return save_figure(fig, path)


def reproduce_trap_dp(config: TrapDPConfig, out: str | Path, *, progress: bool = True, ray: str | None = None) -> dict:
    """Run (or resume) every cell, here or on the Ray cluster at ``ray`` (:func:`fedleak.study.cells.
    run_cells`); write ``table.txt``/``table.csv``, ``summary.json``, ``comparison.md``, ``recall_vs_sigma.png``
    and ``extractions.png`` (the best candidate of the first inputs per sigma) in ``out``; return the table rows
    and the vanishing sigmas."""
    results = ResultsDir(out, asdict(config))
    data, data_name = load_training_images(config.dataset, config.root, None)
    near, loose = near_key(config.near_psnr), near_key(config.loose_psnr)
    cells = _cells_of(config)
    means = mean_of_runs(measure, {_key(*c): c[1:] for c in cells}, config.runs, results,
                         ("A", "P", "R", near, loose, "best_psnr", "declared"), shared=(data, config), ray=ray,
                         device=config.device, progress=progress, desc="dp cells")
    rows = [{"part": part, "clip": clip, "sigma": sigma, **means[_key(part, clip, sigma)]}
            for part, clip, sigma in cells]
    noisy = [r for r in rows if r["part"] == "local_dp"]
    exact_gone = vanishing_point([r["sigma"] for r in noisy], [r["R"] for r in noisy])
    near_gone = vanishing_point([r["sigma"] for r in noisy], [r[near] for r in noisy])
    loose_gone = vanishing_point([r["sigma"] for r in noisy], [r[loose] for r in noisy])

    def said(sigma):
        return f"sigma = {sigma:g}" if sigma is not None else f"no sigma up to {config.sigmas[-1]:g}"

    header = (f"{'part':9s} {'clip':>6s} {'sigma':>7s}   {'A':>5s} {'P':>5s} {'R':>5s} {near:>18s} {loose:>18s} "
              f"{'best PSNR':>9s}")
    lines = [f"Boenisch et al. (paper 002) §9 / Fig. 4: trap weights (s = {config.scale_factor}) under per-sample "
             f"clipping and local DP noise; {config.model} {config.model_options} on {data_name}, B = "
             f"{config.batch_size}, mean of {config.runs} runs ({config.profile} profile)", "", header]
    for r in rows:
        clip = "-" if r["clip"] is None else f"{r['clip']:g}"
        lines.append(f"{r['part']:9s} {clip:>6s} {r['sigma']:>7.0e}   {r['A']:5.3f} {r['P']:5.3f} {r['R']:5.3f} "
                     f"{r[near]:18.3f} {r[loose]:18.3f} {r['best_psnr']:9.1f}")
    lines += ["", f"exact leakage (R) disappears from {said(exact_gone)}; near-exact leakage ({near}: best candidate "
                  f">= {config.near_psnr:g} dB PSNR) disappears from {said(near_gone)}; the looser {loose} from "
                  f"{said(loose_gone)} (clip c = {config.noise_clip:g})"]
    lines.append(study_figures(_recall_figure(rows, near, results.path / "recall_vs_sigma.png"),
                               lambda cell: measure(data, config, *cell, 0, keep=True)["images"], (None, 0.0),
                               [(c, s) for part, c, s in cells if part == "local_dp"],
                               [f"sigma={s:g}" for s in config.sigmas], setting="sigma", clean="undefended",
                               near_psnr=config.near_psnr, curve_note=" (Fig. 4 as curves)"))
    text = "\n".join(lines) + "\n"
    clipping = [r for r in rows if r["part"] == "clipping"]
    comparison = [
        Comparison("Fig. 4a: clipping alone at the users' end", ["clip c", "R (ours)", f"{near} (ours)", "paper"],
                   [[r["clip"], r["R"], r[near], P002_DP["clipping_alone"]] for r in clipping],
                   [f"no defense: R = {rows[0]['R']:.3f}; the paper shows one MNIST point, we a batch of "
                    f"{config.batch_size} on {data_name}"]),
        Comparison(f"Fig. 4b: local DP noise after clipping at c = {config.noise_clip:g}",
                   ["sigma", "R (ours)", f"{near} (ours)", f"{loose} (ours)", "best PSNR dB (ours)"],
                   [[f"{r['sigma']:g}", r["R"], r[near], r[loose], round(r["best_psnr"], 1)] for r in noisy],
                   [f"paper: noise that mitigates the attack: sigma {P002_DP['sigma_that_mitigates']}",
                    f"ours: exact leakage gone from {said(exact_gone)}, near-exact leakage gone from "
                    f"{said(near_gone)}, {loose} gone from {said(loose_gone)}"]),
    ]
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_json("summary.json", {"rows": rows, "exact_vanishes_at_sigma": exact_gone,
                                        "near_vanishes_at_sigma": near_gone, "near_key": near,
                                        "loose_vanishes_at_sigma": loose_gone, "loose_key": loose})
    results.write_text("comparison.md", comparison_markdown("Paper 002 §9 (DP): ours beside the paper", comparison))
    return {"text": text, "rows": rows, "exact_vanishes_at_sigma": exact_gone, "near_vanishes_at_sigma": near_gone,
            "loose_vanishes_at_sigma": loose_gone}
