"""Figures written as PNG (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def accuracy_plot(rounds: Sequence[int], accuracies: Sequence[float], path: str | Path, *, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(list(rounds), list(accuracies), marker="o", markersize=3)
    ax.set_xlabel("round")
    ax.set_ylabel("global test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def image_grid(rows: Sequence[torch.Tensor], path: str | Path, *, row_labels: Sequence[str] = (),
               missing: Sequence[torch.Tensor | None] = ()) -> Path:
    """Save rows of images (each a (N, C, H, W) tensor in [0, 1], all of one C, H, W) as one grid. ``missing[r]``
    is an optional boolean mask per row; masked images are drawn grey (e.g. points an attack did not extract).
    The grid is one mosaic image with 2-pixel white gaps, so drawing it costs one ``imshow`` whatever its size."""
    channels, height, width = rows[0].shape[1:]
    n_cols = max(len(r) for r in rows)
    mosaic = torch.ones(channels, len(rows) * (height + 2), n_cols * (width + 2))
    for r, images in enumerate(rows):
        images = images.detach().float().cpu().clamp(0, 1)
        gone = missing[r] if r < len(missing) else None
        if gone is not None:
            images = torch.where(gone.cpu().view(-1, 1, 1, 1), torch.full_like(images, 0.5), images)
        top = r * (height + 2)
        for c, image in enumerate(images):
            mosaic[:, top:top + height, c * (width + 2):c * (width + 2) + width] = image
    fig, ax = plt.subplots(figsize=(n_cols * 0.8 + 1.2, len(rows) * 0.8 + 0.2))
    picture = mosaic[0].numpy() if channels == 1 else mosaic.permute(1, 2, 0).numpy()
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([(r + 0.5) * (height + 2) for r in range(len(row_labels))], list(row_labels), fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def privacy_accuracy_plot(points: Sequence[tuple[str, float, float]], path: str | Path, *, leak_label: str,
                          title: str = "") -> Path:
    """One labelled point per defense: its test accuracy (x) against the worst leakage any attack reached
    behind it (y, e.g. the best SSIM or extraction recall); lower right is better."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, accuracy, leak in points:
        ax.scatter([accuracy], [leak], s=30)
        ax.annotate(label, (accuracy, leak), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("test accuracy after the short FedAvg run")
    ax.set_ylabel(leak_label)
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, *(leak for _, _, leak in points)) - 0.05, 1.05)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def leakage_curve(axis, xs: Sequence[float], rows: Sequence[dict], near: str, *, baseline: float | None = None,
                  baseline_label: str = "", suffix: str = "", xlabel: str = "", log_x: bool = False) -> None:
    """Exact recall ``R`` (solid) and the near-exact share under key ``near`` (dashed, same colour) of ``rows``
    against ``xs`` (labelled ``xlabel``, on a log scale with ``log_x``) on a 0..1 axis, with an optional grey
    ``baseline`` recall."""
    line, = axis.plot(xs, [r["R"] for r in rows], marker="o", label=f"exact recall R{suffix}")
    axis.plot(xs, [r[near] for r in rows], marker="s", linestyle="--", color=line.get_color(),
              label=f"{near.replace('_', ' ')}{suffix}")
    if baseline is not None:
        axis.axhline(baseline, color="grey", linestyle=":", label=baseline_label)
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.set_xlabel(xlabel)
    if log_x:
        axis.set_xscale("log")


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write (120 dpi) and close ``fig``."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

