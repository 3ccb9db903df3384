"""Shared fixtures, in one place per area, imported here so every test file sees them: data corpora,
tones and their writers (fixtures_data), tiny models (fixtures_models), the synthetic corpora and the
learning recipes' runs (fixtures_synth). Everything is written by the tests themselves: nothing is
downloaded."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import fixtures_synth  # noqa: E402
from fixtures_data import *  # noqa: F401,F403,E402
from fixtures_models import *  # noqa: F401,F403,E402
from fixtures_synth import *  # noqa: F401,F403,E402


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Move the tests that read a learning recipe's run to the end: the recipes train in the
    background from the session's first test on (``fixtures_synth.start_learning_runs_early``, which
    starts only those the finally selected tests need), so every other test runs while they train."""
    items.sort(key=lambda item: bool(fixtures_synth.recipes_needed_by(item)))  # stable within each group
