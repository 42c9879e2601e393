"""The audit's accuracy-vs-privacy figure: one panel per privacy measure (SSIM of reconstructed images, exact
recall of extracted points), never two measures on one axis; each defense one marker, named in a legend (labels
beside points overlap when two defenses score alike)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("worst_ssim", "worst SSIM of a reconstruction (images)"),
          ("worst_recall", "worst exact recall (share of samples)"))
MARKERS = "osD^v<>ph*"


def privacy_accuracy_plots(defenses: list[dict], path: str | Path, *, title: str = "") -> bool:
    """Test accuracy (x) against the worst leak behind each defense (y), one panel per measure that any defense
    has; ``False`` (nothing drawn) when no defense has both an accuracy and a leak."""
    panels = [(key, label) for key, label in PANELS
              if any(d.get("accuracy") is not None and d.get(key) is not None for d in defenses)]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 3.8), squeeze=False)
    for axis, (key, label) in zip(axes[0], panels):
        for index, d in enumerate(defenses):
            if d.get("accuracy") is None or d.get(key) is None:
                continue
            axis.scatter([100 * d["accuracy"]], [d[key]], s=45, marker=MARKERS[index % len(MARKERS)],
                         label=d["defense"], alpha=0.8)
        chance = next((d["chance"] for d in defenses if d.get("chance")), None)
        if chance:
            axis.axvline(100 * chance, color="grey", linestyle=":", label="chance")
        axis.set_xlabel("test accuracy after the short FedAvg run [%]")
        axis.set_ylabel(label)
        axis.set_xlim(0, 100)
        axis.set_ylim(-0.05, 1.05)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if title:
        fig.suptitle(f"{title}: lower right is better", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
