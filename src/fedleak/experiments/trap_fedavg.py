"""Paper 002 §8.4 (trap weights in FedAvg): a malicious server sends trap weights (Algorithm 1) and reads each
client's FedAvg update (the parameter change of ``local_steps`` plain SGD steps at learning rate ``lr``), exactly
(R, §8.1) and near-exactly (the share of the client's inputs whose best candidate reaches 30 dB PSNR).

Eq. 5 holds for the delta of one SGD step (``-lr * gradient``), but the client sends ``w_new - w`` computed in float32,
which loses the low digits of ``lr * gradient`` when lr is small: exact recall then drops to 0 while the candidates
still show the images. Every run is a one-round federation (:func:`fedleak.fl.build_federation`) under an
:class:`fedleak.cases.Audit` with a FedAvg threat model; the FedSGD gradient of the same clients is the baseline.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedleak.cases import Audit, ThreatModel  # noqa: E402
from fedleak.checks import count_field  # noqa: E402
from fedleak.study.cells import mean_of_runs  # noqa: E402
from fedleak.study.paper_tables import P002_FEDAVG  # noqa: E402
from fedleak.fl import FederationSpec, FLConfig, build_federation  # noqa: E402
from fedleak.metrics.extraction import near_key  # noqa: E402
from fedleak.report import ResultsDir  # noqa: E402
from fedleak.report.comparison import Comparison, comparison_markdown  # noqa: E402
from fedleak.report.plots import leakage_curve, save_figure  # noqa: E402
from fedleak.seeds import run_seed  # noqa: E402
from fedleak.study.extraction_cells import TrapStudyConfig  # noqa: E402


@dataclass
class TrapFedAvgConfig(TrapStudyConfig):
    """What ``fedleak reproduce fedavg`` runs: ``clients`` clients of ``batch_size`` inputs per step, each attacked,
    for every (``lrs`` x ``local_steps``) and ``runs`` seeds; the full profile uses the FC-NN of Table 7."""

    dataset: str = "bundled"
    runs: int = count_field(3)
    clients: int = count_field(10)
    lrs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)
    local_steps: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if not self.lrs or any(not lr > 0 for lr in self.lrs) or not self.local_steps or min(self.local_steps) < 1:
            raise ValueError(f"need learning rates > 0 and local steps >= 1; got {self.lrs} and {self.local_steps}")
        super().__post_init__()
        self.lrs = tuple(sorted(self.lrs))

    @classmethod
    def quick(cls, **overrides) -> "TrapFedAvgConfig":
        """One run on a one-hidden-layer FC-NN of 1000 + 64 neurons."""
        return cls(**{**dict(runs=1, model_options={"widths": (1000, 64)}, profile="quick"), **overrides})


def run_cell(config: TrapFedAvgConfig, algorithm: str, lr: float, steps: int, run: int) -> dict:
    """One attacked round of a fresh federation; the mean scores over its clients."""
    spec = FederationSpec(dataset=config.dataset, root=config.root, model=config.model,
                          model_options=dict(config.model_options))
    seed = run_seed(config.seed, run)
    fl = FLConfig(algorithm=algorithm, num_clients=config.clients, rounds=1, batch_size=config.batch_size,
                  local_steps=steps if algorithm == "fedavg" else None, optimizer="sgd", lr=lr, seed=seed,
                  device=config.device)
    audit = Audit("trap_weights", ThreatModel(server="malicious", protocol=algorithm),
                  scale_factor=config.scale_factor, seed=seed, device=config.device)
    build_federation(spec, fl, audit=audit, progress=False).run()
    summary = audit.summary()
    near = near_key()
    return {k: summary[k] for k in ("R", "P", "recall", near, "best_psnr")}


def _figure(rows: list[dict], near: str, path: Path) -> Path:
    fig, axis = plt.subplots(figsize=(5.2, 3.4))
    for steps in sorted({r["steps"] for r in rows if r["algorithm"] == "fedavg"}):
        part = [r for r in rows if r["algorithm"] == "fedavg" and r["steps"] == steps]
        leakage_curve(axis, [r["lr"] for r in part], part, near, suffix=f", {steps} step(s)",
                      xlabel="client learning rate (plain SGD)", log_x=True)
    base = next(r for r in rows if r["algorithm"] == "fedsgd")
    axis.axhline(base["R"], color="grey", linestyle=":", label="FedSGD gradient (R)")
    axis.set_ylabel("share of the client's inputs")
    axis.legend(fontsize=6)
    return save_figure(fig, path)


def reproduce_trap_fedavg(config: TrapFedAvgConfig, out: str | Path, *, progress: bool = True,
                          ray: str | None = None) -> dict:
    """Run (or resume) every cell, here or on the Ray cluster at ``ray`` (:func:`fedleak.study.cells.
    run_cells`); write ``table.txt``/``table.csv``, ``comparison.md`` and ``recall_vs_lr.png`` in ``out``; return
    the rows."""
    results = ResultsDir(out, asdict(config))
    near = near_key()
    cells = [("fedsgd", 1.0, 1)] + [("fedavg", lr, s) for s in config.local_steps for lr in config.lrs]
    means = mean_of_runs(run_cell, {f"{a}/lr={lr:g}/steps={s}": (a, lr, s) for a, lr, s in cells}, config.runs,
                         results, ("P", "R", near, "best_psnr"), shared=(config,), ray=ray, device=config.device,
                         progress=progress, desc="fedavg cells")
    rows = [{"algorithm": a, "lr": lr if a == "fedavg" else None, "steps": s, **means[f"{a}/lr={lr:g}/steps={s}"]}
            for a, lr, s in cells]
    model = config.model + "".join(f":{k}={v}" for k, v in config.model_options.items())
    lines = [f"Boenisch et al. (paper 002) §8.4: trap weights (s = {config.scale_factor}) against FedAvg updates; "
             f"{model} on {config.dataset}, {config.clients} clients of B = {config.batch_size} per step, mean over "
             f"clients and {config.runs} run(s) ({config.profile} profile)", "",
             f"{'update':24s} {'P':>5s} {'R':>5s} {near:>18s} {'best PSNR':>9s}"]
    for r in rows:
        what = "FedSGD gradient" if r["algorithm"] == "fedsgd" else f"FedAvg lr={r['lr']:g} steps={r['steps']}"
        lines.append(f"{what:24s} {r['P']:5.3f} {r['R']:5.3f} {r[near]:18.3f} {r['best_psnr']:9.1f}")
    figure = _figure(rows, near, results.path / "recall_vs_lr.png")
    lines.append(f"\nfigure: {figure}")
    text = "\n".join(lines) + "\n"
    comparison = Comparison(
        "§8.4: trap weights against FedAvg client updates",
        ["update", "P (ours)", "R (ours)", f"{near} (ours)", "paper (TensorFlow Federated FedAvg, s = 0.99)"],
        [["FedSGD gradient" if r["algorithm"] == "fedsgd" else f"lr={r['lr']:g}, {r['steps']} step(s)", r["P"], r["R"],
          r[near], P002_FEDAVG["text"]] for r in rows],
        [f"ours: {config.dataset}, {model}, s = {config.scale_factor}; the paper does not state its learning rate "
         "or local steps"])
    results.write_text("table.txt", text)
    results.write_csv("table.csv", rows)
    results.write_text("comparison.md", comparison_markdown("Paper 002 §8.4 (FedAvg): ours beside the paper",
                                                            [comparison]))
    return {"text": text, "rows": rows}
