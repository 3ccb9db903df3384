"""``lmm-apa evaluate`` end to end on the data area's tiny SYNTHETIC SO762 tree."""

from __future__ import annotations

import json
import re
import random

import pytest
from typer.testing import CliRunner

from lmm_apa.cli import app
from lmm_apa.data.corpus import load_corpus
from lmm_apa.evaluate.run import evaluate_records
from lmm_apa.prompts.tasks import get_task
from prompts_utils import make_utt


def _write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_evaluate_cli_writes_metrics_report_and_plots(tmp_path, so762_labelled_tree):
    corpus = load_corpus(so762_labelled_tree, split="test")
    utts = list(corpus)
    assert len(utts) >= 3
    lines = []
    for n, u in enumerate(utts):
        full = get_task("full").target(u)
        if n == 0:
            full = re.sub(r"Sentence Scores: \d+", "Sentence Scores: ten", full)  # damaged: counted, not dropped
        expected = {"sentence.accuracy": u.sentence.accuracy + 0.25}
        lines.append({"id": u.id, "task": "full", "output": full, "expected": expected})
        lines.append({"id": u.id, "task": "mdd", "output": get_task("mdd").target(u)})
    lines.append({"id": "not-in-reference", "task": "full", "output": "Sentence Scores: 1 2 3 4 5"})
    lines.append("{broken json")
    preds = _write(tmp_path / "preds.jsonl", lines[:-4] + lines[-2:])  # the last utterance is never predicted

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(preds), "--reference", str(so762_labelled_tree),
                                      "--out", str(out), "--split", "test"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(result.output)["n"] == metrics["n"]

    assert set(metrics["sentence"]) == {"accuracy", "fluency", "prosodic", "completeness", "total"}
    assert set(metrics["word"]) == {"accuracy", "stress", "total"} and set(metrics["phone"]) == {"accuracy"}
    for block in (metrics["sentence"]["fluency"], metrics["word"]["accuracy"], metrics["phone"]["accuracy"]):
        assert set(block) >= {"pcc", "scc", "rmse", "n"}
    assert metrics["sentence"]["completeness"]["pcc"] is None  # constant 10 in the fixture
    assert metrics["phone"]["accuracy"]["rmse"] == pytest.approx(0.0)
    assert metrics["sentence"]["accuracy"]["n"] == len(utts) - 2  # one damaged, one unpredicted
    assert metrics["parse_failures"] == 1 and metrics["failures"][0]["id"] == utts[0].id
    assert metrics["unknown_ids"] == ["not-in-reference"]
    assert metrics["unpredicted"] == [utts[-1].id]
    assert metrics["bad_lines"] and metrics["bad_lines"][0]["reason"].startswith("not JSON")
    assert metrics["mdd"]["wer"] == 0.0 and metrics["mdd"]["per"] == 0.0
    assert metrics["expected"]["sentence"]["accuracy"]["rmse"] == pytest.approx(0.25)

    report = (out / "report.md").read_text()
    assert "| GOPT | 0.29 |" in report and "**this run**" in report and "**this run (expected score)**" in report
    assert "Ahn & Nam 2025 LoRA 3 ep | 0.140 | 0.114" in report
    assert "not-in-reference" in report and utts[-1].id in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["confusion_argmax.png", "confusion_expected.png", "scatter_argmax.png", "scatter_expected.png"]
    assert (out / "confusion_argmax.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_cli_names_a_missing_predictions_file(tmp_path, so762_labelled_tree):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope.jsonl"), "--reference", str(so762_labelled_tree)])
    assert result.exit_code != 0 and "nope.jsonl" in result.output


def test_core_scores_known_errors_and_apa_single_tasks():
    rng = random.Random(4)
    refs = {f"u{i}": make_utt(rng, uid=f"u{i}") for i in range(12)}
    records = []
    for uid, u in refs.items():
        values = get_task("apa").reference_values(u)
        acc = values[("sentence", "accuracy", None)]
        pred_acc = min(10, acc + 1)
        records.append({"id": uid, "task": "apa", "output": "{'accuracy': %d, 'fluency': %d, 'prosodic': 99, 'total': %d}"
                        % (pred_acc, values[("sentence", "fluency", None)], values[("sentence", "total", None)])})
    metrics, details = evaluate_records(records, refs)
    assert set(metrics) >= {"n", "parse_failures", "sentence"} and "word" not in metrics and "phone" not in metrics
    assert set(metrics["sentence"]) == {"accuracy", "fluency", "prosodic", "total"}  # no completeness in apa
    assert metrics["sentence"]["prosodic"]["n"] == 0  # 99 is out of range: flagged, never clipped to 10
    assert metrics["parse_failures"] == 12
    assert metrics["sentence"]["fluency"]["rmse"] == 0.0
    human = [get_task("apa").reference_values(u)[("sentence", "accuracy", None)] for u in refs.values()]
    expected_rmse = (sum((min(10, h + 1) - h) ** 2 for h in human) / len(human)) ** 0.5
    assert metrics["sentence"]["accuracy"]["rmse"] == pytest.approx(expected_rmse, abs=1e-9)
