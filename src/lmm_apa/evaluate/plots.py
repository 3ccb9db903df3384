"""Plots for the report: predicted vs human scores per aspect, as scatter plots and confusion
matrices, one grid figure per kind and score source.

Why grids: a ``full`` evaluation has nine aspects, each scored twice (argmax and expected score).
Eighteen separate images make a reader scroll to compare aspects; one 3 x 3 grid per kind and source
puts them side by side (four images for ``full``, two when there are no expected scores).

What a reader can trust in them:
- scatter points are jittered (both axes are mostly whole numbers, so points would hide each other),
  and the jitter is clipped to the score's range: no point is drawn outside 0-10 (0-2 for phones);
- a confusion matrix says in its title how the scores were binned, and its tick labels are exactly
  those bins (phones: SO762's 0-2 scale in steps of 0.2, i.e. the model's integer 0-10 scores / 5);
- every confusion matrix has a colour bar and prints its counts, in a colour readable on its cell.

Matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

GRID_COLUMNS = 3
JITTER = 0.015  # standard deviation of the scatter jitter, as a fraction of the score range
SOURCE_TITLES = {"main": "predicted (argmax) scores", "expected": "expected scores"}
SOURCE_FILES = {"main": "argmax", "expected": "expected"}  # file name part per score source


@dataclass(frozen=True)
class ScoreBins:
    """The classes one aspect's scores are binned into (on the scale the pairs are compared on:
    0-10, phones 0-2), and the range the scores live in."""

    classes: np.ndarray

    @property
    def lo(self) -> float:
        return float(self.classes.min())

    @property
    def hi(self) -> float:
        return float(self.classes.max())

    @property
    def step(self) -> float | None:
        """The bin width when the classes are evenly spaced, else None (stress: 5 or 10)."""
        gaps = np.diff(self.classes)
        return float(gaps[0]) if len(gaps) and np.allclose(gaps, gaps[0]) else None

    def describe(self) -> str:
        """How the scores were binned, in the words a confusion title uses."""
        if self.step is None or len(self.classes) == 2:
            return "binned to " + " or ".join(f"{c:g}" for c in self.classes)
        if self.step == 1:
            return f"binned to integers {self.lo:g}-{self.hi:g}"
        return f"binned to {self.lo:g}-{self.hi:g} in steps of {self.step:g}"

    def labels(self) -> list[str]:
        return [f"{c:g}" for c in self.classes]


def score_bins(level: str, aspect: str) -> ScoreBins:
    """Phones are compared on SO762's 0-2 scale, where the model's integer 0-10 scores are steps of
    0.2; word stress is 5 or 10; everything else is an integer 0-10."""
    if level == "phone":
        return ScoreBins(np.round(np.arange(11) * 0.2, 1))
    if (level, aspect) == ("word", "stress"):
        return ScoreBins(np.array([5.0, 10.0]))
    return ScoreBins(np.arange(11, dtype=float))


def confusion(pred, human, classes) -> np.ndarray:
    """Counts[human class, predicted class] of values put into the nearest class."""
    classes = np.asarray(classes, dtype=float)
    m = np.zeros((len(classes), len(classes)), dtype=int)
    for p, h in zip(pred, human):
        m[int(np.argmin(np.abs(classes - h))), int(np.argmin(np.abs(classes - p)))] += 1
    return m


def jittered(values, lo: float, hi: float, rng: np.random.Generator, fraction: float = JITTER) -> np.ndarray:
    """``values`` plus Gaussian jitter (``fraction`` of the range) that stays in ``[lo, hi]``: jitter
    separates points that share a score but must never draw a score the scale does not have. Jitter
    past an end is reflected back inside (clipping alone would stack half of the 10s on the edge),
    then clipped for the rare jitter larger than the range."""
    values = np.asarray(values, dtype=float)
    moved = values + rng.normal(0.0, fraction * (hi - lo), values.size)
    moved = np.where(moved > hi, 2 * hi - moved, moved)
    moved = np.where(moved < lo, 2 * lo - moved, moved)
    return np.clip(moved, lo, hi)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid_axes(plt, n: int, panel: tuple[float, float], title: str):
    """A figure with ``n`` panels in rows of ``GRID_COLUMNS``; unused cells are hidden."""
    cols = min(GRID_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows + 0.5), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes.flat[:n])


def _pairs(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([r["pred"] for r in rows], dtype=float), np.array([r["human"] for r in rows], dtype=float))


def draw_scatter(ax, rows: Sequence[dict], level: str, aspect: str, seed: int = 0) -> None:
    """Human (x) against predicted (y), jittered within the scale, with the y = x line."""
    pred, human = _pairs(rows)
    bins = score_bins(level, aspect)
    rng = np.random.default_rng(seed)
    ax.scatter(jittered(human, bins.lo, bins.hi, rng), jittered(pred, bins.lo, bins.hi, rng), s=8, alpha=0.4)
    margin = 0.04 * (bins.hi - bins.lo)
    ax.plot([bins.lo, bins.hi], [bins.lo, bins.hi], color="grey", lw=1, ls="--")
    ax.set_xlim(bins.lo - margin, bins.hi + margin)
    ax.set_ylim(bins.lo - margin, bins.hi + margin)
    ax.set_xlabel("human")
    ax.set_ylabel("predicted")
    ax.set_title(f"{level} {aspect} (n={len(rows)})", fontsize=10)


def _count_text(count: int) -> str:
    return f"{count / 1000:.1f}k" if count >= 10_000 else str(count)


def draw_confusion(fig, ax, rows: Sequence[dict], level: str, aspect: str) -> np.ndarray:
    """Confusion matrix (rows human, columns predicted) in the aspect's bins, with a colour bar and
    every non-zero count written on its cell. Returns the counts."""
    pred, human = _pairs(rows)
    bins = score_bins(level, aspect)
    m = confusion(pred, human, bins.classes)
    image = ax.imshow(m, cmap="Blues", origin="lower", vmin=0, vmax=max(1, int(m.max())))
    from matplotlib.ticker import MaxNLocator

    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count", ticks=MaxNLocator(integer=True))
    ax.set_xticks(range(len(bins.classes)), bins.labels(), fontsize=7)
    ax.set_yticks(range(len(bins.classes)), bins.labels(), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("human")
    ax.set_title(f"{level} {aspect}, {bins.describe()}", fontsize=10)
    size = 8 if len(bins.classes) <= 5 else 6.5
    for i, j in zip(*np.nonzero(m)):
        ax.text(j, i, _count_text(int(m[i, j])), ha="center", va="center", fontsize=size,
                color="white" if m[i, j] > m.max() / 2 else "black")
    return m


def scatter_figure(panels: Sequence[tuple[str, str, Sequence[dict]]], title: str):
    """One grid figure of scatter plots, one panel per ``(level, aspect, rows)``."""
    plt = _pyplot()
    fig, axes = _grid_axes(plt, len(panels), (4.0, 3.8), title)
    for ax, (level, aspect, rows) in zip(axes, panels):
        draw_scatter(ax, rows, level, aspect)
    fig.tight_layout()
    return fig


def confusion_figure(panels: Sequence[tuple[str, str, Sequence[dict]]], title: str):
    """One grid figure of confusion matrices, one panel per ``(level, aspect, rows)``."""
    plt = _pyplot()
    fig, axes = _grid_axes(plt, len(panels), (4.6, 4.0), title)
    for ax, (level, aspect, rows) in zip(axes, panels):
        draw_confusion(fig, ax, rows, level, aspect)
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return str(path)


def write_plots(details: dict, out: str | Path) -> list[str]:
    """Per score source with data (``main``: the argmax scores, ``expected``: expected scores), a
    scatter grid and a confusion grid over every aspect: ``scatter_argmax.png``,
    ``confusion_argmax.png`` (and ``..._expected.png``). Returns the file paths."""
    out = Path(out)
    written = []
    for source, pairs in details.get("pairs", {}).items():
        panels = [(level, aspect, rows) for (level, aspect), rows in pairs.items() if rows]
        if not panels:
            continue
        what, name = SOURCE_TITLES.get(source, f"{source} scores"), SOURCE_FILES.get(source, source)
        written.append(_save(scatter_figure(panels, f"{what} vs human scores (jittered)"), out / f"scatter_{name}.png"))
        written.append(_save(confusion_figure(panels, f"{what}: confusion with human scores"), out / f"confusion_{name}.png"))
    return written
