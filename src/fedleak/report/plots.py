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
    """Save rows of images (each a (N, C, H, W) tensor in [0, 1]) as one grid. ``missing[r]`` is an optional
    boolean mask per row; masked images are drawn grey (e.g. points an attack did not extract)."""
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * 0.9 + 1.2, len(rows) * 0.95), squeeze=False)
    for r, images in enumerate(rows):
        gone = missing[r] if r < len(missing) else None
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c >= len(images):
                continue
            img = images[c].detach().float().cpu().clamp(0, 1)
            if gone is not None and bool(gone[c]):
                img = torch.full_like(img, 0.5)
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img.permute(1, 2, 0).numpy())
        if r < len(row_labels):
            axes[r][0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
