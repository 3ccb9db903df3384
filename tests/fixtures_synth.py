"""Fixtures for the synth area (see conftest.py).

The 300-utterance synthetic corpus (and its silent twin) are written once per session and shared by
the synth tests, the learning proofs and the demo test; the trained tiny models are shared likewise,
so the expensive step (training) happens once however many tests read its results.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

SYNTH_N = 300
SYNTH_SEED = 0


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """The default synthetic corpus (300 utterances, seed 0: 240 train / 60 test), with the writer's
    summary (incl. its wall time) in ``summary.json`` next to it."""
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("synth") / "corpus"
    t0 = time.perf_counter()
    summary = write_synthetic_corpus(out, n_utterances=SYNTH_N, seed=SYNTH_SEED)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    (out.parent / "summary.json").write_text(json.dumps(summary, indent=2))
    return out


@pytest.fixture(scope="session")
def synth_corpus_silent(tmp_path_factory) -> Path:
    """Same labels as ``synth_corpus``, silent audio of the same lengths (the control run)."""
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("synth_silent") / "corpus"
    write_synthetic_corpus(out, n_utterances=SYNTH_N, seed=SYNTH_SEED, silence=True)
    return out
