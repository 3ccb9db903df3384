"""Shared fixtures. Each area keeps its fixtures in its own module, imported here so every test
file sees them: data corpora (fixtures_data), tiny models (fixtures_models), the synthetic corpus
(fixtures_synth). Everything is written by the tests themselves: nothing is downloaded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from fixtures_data import *  # noqa: F401,F403,E402
from fixtures_models import *  # noqa: F401,F403,E402
from fixtures_synth import *  # noqa: F401,F403,E402
