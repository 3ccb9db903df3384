"""Shared fixtures, in one place per area, imported here so every test file sees them: data corpora,
tones and their writers (fixtures_data), tiny models (fixtures_models), the synthetic corpora and the
learning recipes' runs (fixtures_synth). Everything is written by the tests themselves: nothing is
downloaded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import fixtures_synth  # noqa: E402
from fixtures_data import *  # noqa: F401,F403,E402
from fixtures_models import *  # noqa: F401,F403,E402
from fixtures_synth import *  # noqa: F401,F403,E402


def _needs_learning(item) -> set[str]:
    names = getattr(item, "fixturenames", ())
    return {recipe for name, recipe in fixtures_synth.RECIPE_FIXTURES.items() if name in names}


def pytest_collection_modifyitems(session, config, items):
    """Record which learning recipes the selected tests need, so the session trains only those
    (side by side, once each: fixtures_synth.LearningRuns), and move the tests that read them to the
    end: the recipes train in the background from the session's first test on
    (``start_learning_runs_early``), so every other test runs while they train."""
    for item in items:
        fixtures_synth.NEEDED_RECIPES.update(_needs_learning(item))
    items.sort(key=lambda item: bool(_needs_learning(item)))  # stable: the order within each group is kept
