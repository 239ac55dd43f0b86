"""Matplotlib figures of the evaluation results (Agg backend, files only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lookalike.eval.protocols.homography import MatchingReport

__all__ = ["plot_mma"]


def plot_mma(report: MatchingReport, path: str | os.PathLike[str]) -> Path:
    """MMA vs threshold, one panel per data set and one over all pairs; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [*report.groups(), None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, group in zip(axes[0], panels):
        for name in report.descriptors:
            s = report.summary(name, group=group)
            if s["pairs"]:
                ax.plot(report.thresholds, s["mma"], marker="o", markersize=3, label=name)
        ax.set_title(group or "all pairs")
        ax.set_xlabel("threshold (px)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("MMA (mutual NN)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
