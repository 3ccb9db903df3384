"""The seed sweep's verdict (benchmarks/bench_learning.py): the summary must call a sweep a success
only when every seed met every goal, the median reached 0.85, no argmax was constant and the audio
control collapsed everywhere. Pure figures, no training (the sweep itself is a benchmark)."""

from __future__ import annotations

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
