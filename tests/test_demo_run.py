"""`lmm-apa demo` end to end, shortened (few utterances, few steps): every stage runs through the
real code and the report folder has what the README promises. That the demo's full-length run
learns (held-out sentence-accuracy PCC >= 0.8) is the learning proof in test_learning_qwen.py, which
trains the same config on the same corpus recipe."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_writes_report_and_metrics(tmp_path):
    from lmm_apa.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, seed=1, utterances=30, overrides=["max_steps=3", "tasks=[sentence-accuracy]"])
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    assert result["report"] == str(out / "report.md")
    assert metrics["n"] > 0 and metrics["parse_failures"] == 0  # constrained decoding always parses
    assert "sentence" in metrics and "accuracy" in metrics["sentence"]
    assert "not** a measure of pronunciation" in report and "synthetic" in report
    assert (out / "synthetic-corpus/resource/SYNTHETIC.md").is_file()
    assert (out / "train/adapter").is_dir()
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == metrics["n"] and all("expected" in p for p in preds)


def test_demo_cli_rejects_missing_corpus(tmp_path):
    from typer.testing import CliRunner

    from lmm_apa.cli import app

    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--corpus", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert "nope" in (res.output + str(res.exception))
