"""Plots for the report: predicted vs human per aspect (scatter, jittered because both are mostly
integers), and the confusion of integer scores (rows human, columns predicted; phones on the
model's 0-10 grid, i.e. SO762's 0-2 in steps of 0.2). Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _grid(level: str, aspect: str) -> tuple[np.ndarray, float]:
    """Integer classes for the confusion matrix and the factor to reach them."""
    if level == "phone":
        return np.arange(11), 5.0  # 0-2 scale x5
    if (level, aspect) == ("word", "stress"):
        return np.array([5, 10]), 1.0
    return np.arange(11), 1.0


def confusion(pred, human, classes: np.ndarray) -> np.ndarray:
    """Counts[human class, predicted class] of values rounded to the nearest class."""
    classes = np.asarray(classes)
    m = np.zeros((len(classes), len(classes)), dtype=int)
    for p, h in zip(pred, human):
        i = int(np.argmin(np.abs(classes - h)))
        j = int(np.argmin(np.abs(classes - p)))
        m[i, j] += 1
    return m


def plot_aspect(rows: list[dict], level: str, aspect: str, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.array([r["pred"] for r in rows], dtype=float)
    human = np.array([r["human"] for r in rows], dtype=float)
    classes, factor = _grid(level, aspect)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    rng = np.random.default_rng(0)
    span = (human.max() - human.min()) if human.size else 1.0
    jitter = 0.015 * (span or 1.0)
    ax1.scatter(human + rng.normal(0, jitter, human.size), pred + rng.normal(0, jitter, pred.size), s=8, alpha=0.4)
    lo = min(classes.min() / factor, float(np.min(pred, initial=0)))
    hi = max(classes.max() / factor, float(np.max(pred, initial=0)))
    ax1.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax1.set_xlabel("human")
    ax1.set_ylabel("predicted")
    ax1.set_title(f"{title} (n={len(rows)})")
    m = confusion(pred * factor, human * factor, classes)
    ax2.imshow(m, cmap="Blues", origin="lower")
    labels = [f"{c / factor:g}" for c in classes]
    ax2.set_xticks(range(len(classes)), labels, fontsize=7)
    ax2.set_yticks(range(len(classes)), labels, fontsize=7)
    ax2.set_xlabel("predicted (rounded)")
    ax2.set_ylabel("human (rounded)")
    ax2.set_title("confusion of integer scores")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax2.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                         color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_plots(details: dict, out: str | Path) -> list[str]:
    """One PNG per (source, level, aspect) with data; returns the file paths."""
    out = Path(out)
    written = []
    for source, pairs in details.get("pairs", {}).items():
        for (level, aspect), rows in pairs.items():
            if not rows:
                continue
            prefix = "" if source == "main" else f"{source}_"
            path = out / f"plot_{prefix}{level}_{aspect}.png"
            title = f"{level} {aspect}" + ("" if source == "main" else f" ({source})")
            written.append(str(plot_aspect(rows, level, aspect, path, title)))
    return written
