"""Simulated SimPO / DPO pairs obey Wang et al. 2025's rules: only the target aspect moves, by 2-4
within the scale, and the scores that depend on it follow (property-based)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmm_apa.prompts.tasks import get_task
from lmm_apa.train.preference import make_preference_pair
from prompts_utils import make_utt

SCORE_TASKS = ["full", "word-sentence", "word-accuracy", "sentence-accuracy", "sentence-fluency",
               "sentence-prosodic", "sentence-total", "apa"]


def _mean_round(changes):
    m = sum(changes) / len(changes)
    return int(math.copysign(math.floor(abs(m) + 0.5), m))


def _sign(x):
    return (x > 0) - (x < 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(SCORE_TASKS), st.integers(0, 100), st.integers(0, 10))
def test_pairs_obey_the_consistency_rules(utt_seed, task_name, seed, aspect_pick):
    utt = make_utt(random.Random(utt_seed))
    task = get_task(task_name)
    level, name = task.aspects[aspect_pick % len(task.aspects)]
    chosen, rejected = make_preference_pair(utt, task, aspect=f"{level}.{name}", seed=seed)
    assert chosen == task.target(utt)
    assert rejected != chosen
    assert make_preference_pair(utt, task, aspect=f"{level}.{name}", seed=seed) == (chosen, rejected)
    a = task.parse(chosen, utt)
    b = task.parse(rejected, utt)
    assert a.ok and b.ok, rejected  # same format, every value inside its slot's choices
    A, B = a.values, b.values
    d = {k: B[k] - A[k] for k in A}
    keys = list(A)

    moved = {k for k in keys if k[:2] == (level, name)}
    for k in moved:
        if (level, name) == ("word", "stress"):
            assert {A[k], B[k]} == {5.0, 10.0}
        else:
            assert abs(d[k]) in (2, 3, 4), (k, A[k], B[k])
    # what may change besides the target: its dependants
    allowed = set(moved)
    words = sorted({k[2] for k in keys if k[0] == "word"})
    word_acc_moved = level == "phone" or (level, name) == ("word", "accuracy")
    if level == "phone":
        allowed |= {("word", "accuracy", i) for i in words}
    if word_acc_moved:
        allowed.add(("sentence", "accuracy", None))
    if word_acc_moved or (level, name) == ("word", "stress"):
        allowed |= {("word", "total", i) for i in words}
    if word_acc_moved or (level == "sentence" and name in ("accuracy", "fluency", "prosodic")):
        allowed.add(("sentence", "total", None))
    for k in keys:
        if k not in allowed:
            assert d[k] == 0, (k, level, name, chosen, rejected)

    def clip(v):
        return max(0, min(10, v))

    # phone -> word accuracy
    if level == "phone":
        for i in words:
            ph = [d[k] for k in keys if k[0] == "phone" and k[2][0] == i]
            acc = ("word", "accuracy", i)
            assert B[acc] == clip(A[acc] + _mean_round(ph))
    # word accuracy -> sentence accuracy
    if word_acc_moved and ("sentence", "accuracy", None) in A and words:
        s = ("sentence", "accuracy", None)
        assert B[s] == clip(A[s] + _mean_round([d[("word", "accuracy", i)] for i in words]))
    # word totals follow accuracy and stress, at least one point in their direction
    for i in words:
        t = ("word", "total", i)
        if t in A and (level, name) != ("word", "total"):
            change = d.get(("word", "accuracy", i), 0) + 0.4 * d.get(("word", "stress", i), 0)
            if change == 0:
                assert d[t] == 0
            elif 0 < A[t] < 10 or _sign(change) == (1 if A[t] == 0 else -1):
                assert _sign(d[t]) == _sign(change) and abs(d[t]) >= 1, (i, change, A[t], B[t])
    # the sentence total follows accuracy, fluency and prosody
    t = ("sentence", "total", None)
    if t in A and (level, name) != ("sentence", "total"):
        change = sum(d.get(("sentence", x, None), 0) for x in ("accuracy", "fluency", "prosodic"))
        if change == 0:
            assert d[t] == 0
        elif 0 < A[t] < 10 or _sign(change) == (1 if A[t] == 0 else -1):
            assert _sign(d[t]) == _sign(change) and abs(d[t]) >= 1


def test_default_aspect_is_one_of_the_tasks_and_seeded():
    utt = make_utt(random.Random(0))
    pairs = {make_preference_pair(utt, "full", seed=s)[1] for s in range(20)}
    assert len(pairs) > 5  # aspects and amounts vary with the seed
    assert make_preference_pair(utt, "full", seed=3) == make_preference_pair(utt, "full", seed=3)


def test_bare_aspect_names_and_errors():
    utt = make_utt(random.Random(1))
    chosen, rejected = make_preference_pair(utt, "apa", aspect="fluency", seed=0)
    assert get_task("apa").parse(rejected, utt).values[("sentence", "fluency", None)] != \
        get_task("apa").parse(chosen, utt).values[("sentence", "fluency", None)]
    with pytest.raises(ValueError, match="ambiguous"):
        make_preference_pair(utt, "full", aspect="accuracy")
    with pytest.raises(ValueError, match="no scores"):
        make_preference_pair(utt, "mdd")
    with pytest.raises(ValueError, match="needs"):
        make_preference_pair(make_utt(random.Random(2), labelled=False), "full")
