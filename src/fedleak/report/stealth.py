"""The leakage-stealth trade-off of an adaptive attacker (paper 000 §6), as a figure: leakage against the attacker's
stealth knob and against the detector chain's evidence, refused points filled, accepted ones hollow."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from fedleak.report.plots import save_figure


def stealth_plot(attack: str, model_name: str, points: list[dict], baseline: dict, path: Path, *,
                 signatures: Sequence[str], leakage: Sequence[str], knob: str = "epsilon",
                 prior: dict | None = None) -> Path:
    """Leakage against epsilon (filled: refused by the chain, hollow: accepted) and against the chain's evidence
    (the largest score above its threshold of any detector of ``signatures``); dotted: the same readout of the benign model; dashed:
    ``prior``, what the server has without any gradient."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evidence = [max(0.0, max(p["detectors"][n]["score"] - p["detectors"][n]["threshold"] for n in signatures))
                for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    linear = knob == "a"  # SEER's weight share runs from 0 to 1
    xs = [p[knob] if linear else max(p[knob], 1e-5) for p in points]
    for key, colour in zip(leakage, ("tab:red", "tab:blue", "tab:green", "tab:purple")):
        ys = [p.get(key) for p in points]
        if all(v is None for v in ys):
            continue
        ys = [float("nan") if v is None else v for v in ys]
        left.plot(xs, ys, color=colour, label=key)
        for line, style in ((baseline, ":"), (prior or {}, "--")):
            if line.get(key) is not None:
                for axis in (left, right):
                    axis.axhline(line[key], color=colour, linestyle=style, linewidth=1)
        for x, y, p in zip(xs, ys, points):
            left.scatter([x], [y], color=colour, facecolors=colour if p["refused"] else "none", zorder=3)
        right.scatter(evidence, ys, color=colour, facecolors=[colour if p["refused"] else "none" for p in points],
                      label=key)
    label = "camouflage epsilon (0 drawn at 1e-5)" if knob == "epsilon" else knob
    label = "SEER's weight share a (0: honest model)" if linear else label
    left.set(xscale="linear" if linear else "log", xlabel=label, ylabel="leakage", ylim=(-0.05, 1.05),
             title=f"{attack} on {model_name}")
    title = "filled: refused, dotted: benign" + (", dashed: prior" if prior else " readout")
    right.set(xscale="symlog", xlabel="chain evidence (largest score - threshold; > 0 refuses)",
              ylim=(-0.05, 1.05), title=title)
    right.legend(fontsize=7)
    left.legend(fontsize=7)
    return save_figure(fig, path)
