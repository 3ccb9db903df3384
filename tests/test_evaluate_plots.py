"""Plots and report a reader can trust: jitter inside the scale, confusion bins equal to what the
titles say, a few grid figures for a ``full`` evaluation, the training loss curve linked and titled."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from lmm_apa.evaluate.plots import confusion, confusion_figure, jittered, scatter_figure, score_bins
from lmm_apa.evaluate.report import write_report
from lmm_apa.evaluate.run import evaluate_predictions
from lmm_apa.prompts.tasks import get_task
from prompts_utils import make_utt

FULL_ASPECTS = [("sentence", a) for a in ("accuracy", "fluency", "prosodic", "completeness", "total")] + [
    ("word", a) for a in ("accuracy", "stress", "total")] + [("phone", "accuracy")]


def _rows(level: str, aspect: str, n: int, seed: int = 0) -> list[dict]:
    """Score pairs piled on the ends of the scale, where jitter would spill over."""
    bins = score_bins(level, aspect)
    rng = np.random.default_rng(seed)
    ends = rng.choice([bins.lo, bins.hi], size=(n, 2))
    return [{"pred": float(p), "human": float(h)} for p, h in ends]


def test_jitter_never_leaves_the_scale():
    rng = np.random.default_rng(0)
    values = np.array([0.0] * 5000 + [10.0] * 5000)
    moved = jittered(values, 0.0, 10.0, rng, fraction=0.05)
    assert moved.min() >= 0.0 and moved.max() <= 10.0
    assert np.abs(moved - values).max() > 0.1  # it does jitter (inwards at the ends)
    huge = jittered(values, 0.0, 10.0, rng, fraction=5.0)  # jitter wider than the scale: still inside
    assert huge.min() >= 0.0 and huge.max() <= 10.0


@pytest.mark.parametrize("level,aspect", [("sentence", "accuracy"), ("word", "stress"), ("phone", "accuracy")])
def test_scatter_points_stay_inside_the_scale(level, aspect):
    bins = score_bins(level, aspect)
    fig = scatter_figure([(level, aspect, _rows(level, aspect, 3000))], "t")
    points = fig.axes[0].collections[0].get_offsets()
    assert len(points) == 3000
    assert points.min() >= bins.lo and points.max() <= bins.hi
    assert len(np.unique(np.round(points[:, 0], 6))) > 100  # jittered, not stacked on the ends


def _stated_bins(title: str) -> list[float]:
    """The bins a confusion title announces, spelled out."""
    if m := re.search(r"binned to integers (\d+)-(\d+)", title):
        return [float(x) for x in range(int(m[1]), int(m[2]) + 1)]
    if m := re.search(r"binned to ([\d.]+)-([\d.]+) in steps of ([\d.]+)", title):
        lo, hi, step = map(float, m.groups())
        return [round(lo + k * step, 6) for k in range(int(round((hi - lo) / step)) + 1)]
    if m := re.search(r"binned to ([\d.]+) or ([\d.]+)", title):
        return [float(m[1]), float(m[2])]
    raise AssertionError(f"the title does not say how the scores are binned: {title!r}")


def test_confusion_bins_are_the_ones_the_title_names():
    panels = [(level, aspect, _rows(level, aspect, 50)) for level, aspect in FULL_ASPECTS]
    fig = confusion_figure(panels, "t")
    matrices = [ax for ax in fig.axes if ax.get_title()]
    assert len(matrices) == len(FULL_ASPECTS)
    for ax, (level, aspect) in zip(matrices, FULL_ASPECTS):
        stated = _stated_bins(ax.get_title())
        ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
        assert ticks == stated == [float(t.get_text()) for t in ax.get_yticklabels()], (level, aspect)
    phone = matrices[-1].get_title()
    assert "steps of 0.2" in phone and "integer" not in phone
    # a phone score of 1.3 on the 0-2 scale falls in a 0.2-wide bin, not an integer one
    m = confusion([1.3], [2.0], score_bins("phone", "accuracy").classes)
    assert m[10, 6] + m[10, 7] == 1


def test_confusion_has_a_colour_bar_and_every_count_written():
    rows = _rows("sentence", "accuracy", 40)
    fig = confusion_figure([("sentence", "accuracy", rows)], "t")
    assert any(ax.get_ylabel() == "count" for ax in fig.axes)  # the colour bar
    ax = next(ax for ax in fig.axes if ax.get_title())
    counts = confusion([r["pred"] for r in rows], [r["human"] for r in rows], score_bins("sentence", "accuracy").classes)
    written = sorted(int(t.get_text()) for t in ax.texts)
    assert written == sorted(counts[counts > 0].tolist()) and sum(written) == 40


def test_full_evaluation_writes_four_grid_figures_linked_from_the_report(tmp_path):
    rng = random.Random(3)
    refs = {f"u{i}": make_utt(rng, uid=f"u{i}") for i in range(6)}
    task = get_task("full")
    preds = tmp_path / "preds.jsonl"
    with preds.open("w") as f:
        for uid, u in refs.items():
            f.write(json.dumps({"id": uid, "task": "full", "output": task.target(u),
                                "expected": {"sentence.accuracy": 5.5}}) + "\n")
    train = tmp_path / "run" / "train"
    train.mkdir(parents=True)
    (train / "loss.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "run" / "eval"
    evaluate_predictions(preds, refs, out=out, loss_plot=train / "loss.png")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["confusion_argmax.png", "confusion_expected.png", "scatter_argmax.png", "scatter_expected.png"]
    report = (out / "report.md").read_text()
    for name in pngs:
        assert f"]({name})" in report
    assert "![training loss](../train/loss.png)" in report


def test_report_leaves_out_a_loss_plot_that_does_not_exist(tmp_path):
    metrics = {"n": 0, "parse_failures": 0}
    text = write_report(metrics, tmp_path / "report.md", loss_plot=tmp_path / "nope" / "loss.png").read_text()
    assert "training loss" not in text and "## Training" not in text


def test_training_loss_plot_has_a_title(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lmm_apa.train.trainer import plot_loss_log

    log = tmp_path / "loss_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    titles = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: titles.append(fig.axes[0].get_title()))
    plot_loss_log(log, tmp_path / "loss.png")
    assert titles == ["Training loss"]


def test_evaluate_command_links_the_loss_plot_it_is_given(tmp_path, so762_labelled_tree):
    from typer.testing import CliRunner

    from lmm_apa.cli import app
    from lmm_apa.data.corpus import load_corpus

    utts = list(load_corpus(so762_labelled_tree, split="test"))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": u.id, "task": "sentence-accuracy",
                                         "output": get_task("sentence-accuracy").target(u)}) + "\n" for u in utts))
    loss = tmp_path / "train" / "loss.png"
    loss.parent.mkdir()
    loss.write_bytes(b"\x89PNG not really")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(preds), "--reference", str(so762_labelled_tree), "--split", "test",
                                      "--out", str(out), "--loss-plot", str(loss)])
    assert result.exit_code == 0, result.output
    assert "![training loss](../train/loss.png)" in (out / "report.md").read_text()


def test_colour_bar_ticks_are_whole_counts():
    fig = confusion_figure([("sentence", "accuracy", _rows("sentence", "accuracy", 4))], "t")
    bar = next(ax for ax in fig.axes if ax.get_ylabel() == "count")
    ticks = bar.get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
