"""Proof that the pipeline learns: the tiny Qwen2-Audio-architecture model,
fine-tuned through the real training path on the synthetic corpus and assessed on held-out readings
through the real constrained + expected-score decoder, predicts scores that follow the audio; the
same trained model, given the same held-out readings with their audio silenced, does not (a
pipeline whose audio never reaches the model, or a model that scores the text, cannot pass).

Two recipes (``lmm_apa.demo.RECIPES``), each trained once per session (tests/fixtures_synth.py):
``demo`` (what ``lmm-apa demo`` runs: sentence-accuracy task; shared with the SimPO test) and
``full`` (Wang et al. 2025's sentence + word + phone answer). Goals come from the recipes, so the
suite, the demo's verdict and the seed sweep (benchmarks/bench_learning.py) judge alike."""

from __future__ import annotations

import pytest

from fixtures_synth import show
from lmm_apa.demo import RECIPES, SILENCE_GOAL

pytestmark = pytest.mark.slow


def _meets_goals(run: dict, recipe: str) -> None:
    for level, goal in RECIPES[recipe].goals.items():
        value = run["accuracy_pcc"][level]
        assert value is not None and value >= goal, f"{recipe}: {level} accuracy PCC {value} < {goal}"


def test_demo_recipe_learns_sentence_accuracy(demo_learning):
    print(show("demo recipe", demo_learning))
    assert demo_learning["parse_failures"] == 0 and demo_learning["n_test"] == 200
    _meets_goals(demo_learning, "demo")
    assert demo_learning["argmax_constant"] is None  # the argmax did not fall back to the label prior
    assert demo_learning["learned"] and demo_learning["verdict"].startswith("LEARNED")


def test_demo_recipe_collapses_with_the_audio_silenced(demo_learning):
    silenced = demo_learning["silenced_accuracy_pcc"]
    assert silenced is not None  # the control really ran
    assert (silenced["sentence"] or 0.0) < SILENCE_GOAL  # undefined (constant predictions) = nothing left


def test_full_task_learns_sentence_word_and_phone_accuracy(full_learning):
    print(show("full recipe", full_learning))
    assert full_learning["parse_failures"] == 0 and full_learning["n_test"] == 200
    _meets_goals(full_learning, "full")


def test_full_task_collapses_with_the_audio_silenced(full_learning):
    silenced = full_learning["silenced_accuracy_pcc"]
    assert silenced is not None
    assert (silenced["sentence"] or 0.0) < SILENCE_GOAL
    assert (silenced["phone"] or 0.0) < SILENCE_GOAL
