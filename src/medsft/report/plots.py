"""Figures of logged histories, runs overlaid (PNG, English labels: no CJK font needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

FIGURES = {
    "loss": ("loss", "train loss (mean over the logging window)"),
    "eval_loss": ("eval_loss", "eval loss"),
    "learning_rate": ("learning_rate", "learning rate"),
    "grad_norm": ("grad_norm", "grad norm (global L2, before clipping)"),
}


LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")


def plot_histories(histories: Mapping[str, pd.DataFrame], out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
    """One PNG per history column with every run overlaid (``<prefix><name>.png``); returns
    name → path. A column no run has logged is skipped; runs whose lines coincide stay
    distinguishable by their line style and marker."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, (column, label) in FIGURES.items():
        series = {run: h.dropna(subset=[column]) for run, h in histories.items() if column in h}
        series = {run: s for run, s in series.items() if not s.empty}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for i, (run, s) in enumerate(series.items()):
            ax.plot(
                s["step"],
                s[column],
                linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                marker=MARKERS[i % len(MARKERS)],
                markevery=max(1, len(s) // 12),
                markersize=4,
                label=run,
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"{prefix}{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written[name] = path
    return written


def plot_length_histogram(lengths: Mapping[str, list[int]], max_length: int, path: str | Path) -> Path:
    """Histogram of formatted example lengths (prompt + target tokens) per split, with the
    truncation length marked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for split, values in lengths.items():
        if values:
            ax.hist(values, bins=30, alpha=0.6, label=f"{split} (n={len(values)})")
    ax.axvline(max_length, color="black", linestyle="--", label=f"max_length = {max_length}")
    ax.set_xlabel("tokens per formatted example (prompt + target)")
    ax.set_ylabel("examples")
    ax.set_title("example lengths")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
