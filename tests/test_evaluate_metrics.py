"""Metrics agree with scipy and a direct Levenshtein to 1e-9; undefined figures are None with why."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lmm_apa.data.phones import normalise_transcript
from lmm_apa.evaluate.mdd import mdd_counts
from lmm_apa.evaluate.metrics import (
    detection_scores,
    error_rate,
    score_metrics,
    wer,
)


def levenshtein(a: list[str], b: list[str]) -> int:
    """Direct dynamic programme, independent of jiwer."""
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), min_size=2, max_size=40))
def test_score_metrics_match_scipy(pairs):
    x = [float(p) for p, _ in pairs]
    y = [float(h) for _, h in pairs]
    m = score_metrics(x, y)
    assert m["n"] == len(pairs)
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean((np.array(x) - np.array(y)) ** 2)), abs=1e-9)
    if len(set(x)) > 1 and len(set(y)) > 1:
        assert abs(m["pcc"] - stats.pearsonr(x, y)[0]) < 1e-9
        assert m["p"] == pytest.approx(stats.pearsonr(x, y)[1], rel=1e-9, abs=1e-300)
        assert abs(m["scc"] - stats.spearmanr(x, y)[0]) < 1e-9
        assert "reason" not in m
    else:
        assert m["pcc"] is None and m["p"] is None and m["scc"] is None and "constant" in m["reason"]


def test_pcc_p_value_separates_a_real_correlation_from_noise():
    rng = np.random.default_rng(0)
    human = rng.normal(size=200)
    strong = score_metrics(human + 0.5 * rng.normal(size=200), human)
    noise = score_metrics(rng.normal(size=200), human)
    assert strong["p"] < 1e-20 and noise["p"] > 0.05
    # two-sided t test of r with n - 2 degrees of freedom, computed directly
    r, n = noise["pcc"], 200
    t = r * math.sqrt((n - 2) / (1 - r * r))
    assert noise["p"] == pytest.approx(2 * stats.t.sf(abs(t), n - 2), rel=1e-6)


def test_constant_completeness_is_undefined_not_zero():
    m = score_metrics([9, 10, 10, 8], [10, 10, 10, 10])
    assert m["pcc"] is None and m["scc"] is None
    assert m["reason"] == "human scores are constant (10)"
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 0 + 4) / 4))
    assert score_metrics([1], [2])["reason"].startswith("fewer than 2")
    assert score_metrics([], [])["rmse"] is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["AA", "B", "K", "IY", "T", "<unk>"]), max_size=12), min_size=1, max_size=6),
       st.data())
def test_error_rate_matches_direct_levenshtein(refs, data):
    hyps = [data.draw(st.lists(st.sampled_from(["AA", "B", "K", "IY", "T", "S"]), max_size=12)) for _ in refs]
    out = error_rate(refs, hyps)
    n = sum(len(r) for r in refs)
    expected_errors = sum(levenshtein(r, h) for r, h in zip(refs, hyps))
    if n:
        assert abs(out["rate"] - expected_errors / n) < 1e-9
    else:
        assert out["rate"] is None
    assert out["substitutions"] + out["deletions"] + out["insertions"] == expected_errors


def test_wer_and_per_normalise_case_punctuation_and_stress():
    assert wer(["That's an interesting observation."], ["THAT'S AN INTERESTING OBSERVATION"]) == 0.0
    assert wer(["WE CALL IT BEAR"], ["we call bear"]) == pytest.approx(0.25)
    # PER as evaluate.mdd computes it: phones in data.phones' convention, then error_rate
    ref, hyp = normalise_transcript(["W", "IY0", "K"]), normalise_transcript("W - IY1 K")
    assert error_rate([ref], [hyp])["rate"] == 0.0
    assert error_rate([["W", "IY0", "K"]], [["W", "IY1", "K"]])["rate"] == pytest.approx(1 / 3)


def test_mdd_counts_follow_the_detection_hierarchy():
    canonical = ["B", "EH", "R", "T"]  # evaluate.mdd's phone convention: no stress digits
    human = ["B", "AE", None, "T"]  # EH heard as AE, R deleted
    predicted = ["B", "AE", "R", "D"]  # EH rejected (right), R accepted (missed), T rejected (false alarm)
    c = mdd_counts(canonical, human, predicted)
    assert c == {"ta": 1, "fr": 1, "fa": 1, "tr": 1, "correct_diagnosis": 1}
    s = detection_scores(c)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(0.5) and s["f1"] == pytest.approx(0.5)
    assert detection_scores({"ta": 3, "fr": 0, "fa": 0, "tr": 0})["precision"] is None
