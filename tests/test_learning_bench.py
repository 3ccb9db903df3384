"""The seed sweep's verdict (benchmarks/bench_learning.py): the summary must call a sweep a success
only when every seed met every goal, the median reached 0.85, no argmax was constant and the audio
control collapsed everywhere. Pure figures, no training (the sweep itself is a benchmark)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_learning  # noqa: E402


def _row(seed, sent=0.9, argmax=0.8, phone=None, silenced=0.02, constant=False, learned=True):
    return {"seed": seed, "sent_exp": sent, "sent_argmax": argmax, "word": None, "phone": phone,
            "silenced": silenced, "constant": constant, "steps": 500, "wall_s": 100.0, "learned": learned}


def test_a_sweep_where_every_seed_learns_meets_its_goals():
    s = bench_learning._summary([_row(0, 0.86), _row(1, 0.9), _row(2, 0.81)], {"sentence": 0.8})
    assert s["goals_met"] and s["learned"] == 3 and s["sent_exp"]["median"] == 0.86 and s["sent_exp"]["min"] == 0.81
    assert "phone" not in s  # the task has no phone level


@pytest.mark.parametrize("bad", [
    _row(9, sent=0.79, learned=False),  # one seed below the goal
    _row(9, constant=True, learned=False),  # the argmax fell back to the label prior
    _row(9, silenced=0.3, learned=False),  # the audio control kept its correlation
    _row(9, sent=None, argmax=None, learned=False),  # undefined PCC counts as nothing learned
    {"seed": 9, "error": "crashed"},  # a run that did not finish
])
def test_one_bad_seed_fails_the_sweep(bad):
    assert not bench_learning._summary([_row(0), _row(1), bad], {"sentence": 0.8})["goals_met"]


def test_median_below_085_fails_even_when_every_seed_clears_08():
    assert not bench_learning._summary([_row(0, 0.82), _row(1, 0.83), _row(2, 0.95)], {"sentence": 0.8})["goals_met"]


def test_phone_goal_is_checked_per_seed():
    goals = {"sentence": 0.8, "phone": 0.6}
    assert bench_learning._summary([_row(0, phone=0.65), _row(1, phone=0.61)], goals)["goals_met"]
    assert not bench_learning._summary([_row(0, phone=0.65), _row(1, phone=0.55)], goals)["goals_met"]


def _write_localisation_case(tmp_path, predict) -> tuple:
    """Three readings of three words (one phone each); ``predict(label)`` gives each word's expected score."""
    labels = {"u1": [10, 4, 10], "u2": [8, 8, 2], "u3": [10, 10, 6]}
    scores = {u: {"words": [{"accuracy": a, "phones-accuracy": [a / 5]} for a in acc]} for u, acc in labels.items()}
    corpus = tmp_path / "corpus"
    (corpus / "resource").mkdir(parents=True, exist_ok=True)
    (corpus / "resource" / "scores.json").write_text(json.dumps(scores))
    lines = []
    for u, acc in labels.items():
        expected = {f"word.{i}.accuracy": predict(a) for i, a in enumerate(acc)}
        expected.update({f"phone.{i}.0.accuracy": predict(a) for i, a in enumerate(acc)})
        lines.append(json.dumps({"id": u, "expected": expected}))
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "p.jsonl", corpus


def test_localisation_separates_hearing_where_from_hearing_how_much(tmp_path):
    exact = bench_learning.localisation(*_write_localisation_case(tmp_path, lambda a: float(a)))
    assert exact["word_within"] == exact["phone_within"] == 1.0
    # the ceiling: each word given its reading's mean (8, 6, 26/3), computed by hand
    assert exact["word_ceiling"] == exact["phone_ceiling"] == pytest.approx(0.4057, abs=1e-3)
    inverted = bench_learning.localisation(*_write_localisation_case(tmp_path, lambda a: 10.0 - a))
    assert inverted["word_within"] == -1.0
    assert bench_learning.localisation(*_write_localisation_case(tmp_path, lambda a: 7.0))["word_within"] is None


def test_localisation_skips_short_readings_and_unscored_items_and_keeps_the_last_line(tmp_path):
    scores = {"u1": {"words": [{"accuracy": 10, "phones-accuracy": [2.0]}, {"accuracy": 4, "phones-accuracy": [0.8]}]},
              "u2": {"words": [{"accuracy": 8, "phones-accuracy": [1.6]}, {"accuracy": 2, "phones-accuracy": [0.4]}]},
              "u3": {"words": [{"accuracy": 6, "phones-accuracy": [1.2]}, {"accuracy": None, "phones-accuracy": [2.0]}]},
              "u4": {"words": [{"accuracy": 9, "phones-accuracy": [1.8]}, {"accuracy": 3, "phones-accuracy": [0.6]}]}}
    corpus = tmp_path / "corpus"
    (corpus / "resource").mkdir(parents=True)
    (corpus / "resource" / "scores.json").write_text(json.dumps(scores))

    def line(uid, words):
        expected = {f"word.{i}.accuracy": v for i, v in enumerate(words)}
        expected.update({f"phone.{i}.0.accuracy": v for i, v in enumerate(words)})
        return json.dumps({"id": uid, "expected": expected})

    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join([
        line("u1", [0.0, 10.0]),  # superseded by the next line for u1
        line("u1", [10.0, 4.0]), line("u2", [8.0, 2.0]),
        line("u3", [6.0, 1.0]),   # one scored word: left out of the word columns, kept for phones
        json.dumps({"id": "u4", "expected": {"word.0.accuracy": 9.0}}),  # one predicted word: left out
    ]) + "\n")
    r = bench_learning.localisation(preds, corpus)
    assert r["word_within"] == 1.0  # u1 and u2 only, from u1's last line
    assert r["phone_within"] == pytest.approx(0.5628, abs=1e-3)  # u3's phones (6 and 10 vs 6 and 1) count
