"""Fixtures for the synth area (see conftest.py).

The synthetic corpora (and their silent twins) are written once per session and shared by the synth
tests, the learning proofs and the demo test; each trained tiny model is trained once (session
scope), however many tests read its results. ``learning_run`` is the one recipe all proofs use: the
real training path (``train_from_config``), the real inference path (``predict_corpus`` with
template-constrained + expected-score decoding) and the real metrics (``evaluate_predictions``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

SYNTH_N = 300
SYNTH_SEED = 0
LEARN_N = 900  # 600 train / 300 held-out readings: a held-out PCC that does not swing on a few utterances
LEARN_TEST_FRACTION = 1 / 3  # (by chance alone a PCC on n held-out readings has s.d. ~1/sqrt(n): 0.06 here)
LEARN_SEED = 0
TINY_AUDIO_SECONDS = 6  # the synthetic corpus never exceeds 6 s: a 6 s encoder window is 2.5x cheaper


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
def learning_corpus(tmp_path_factory) -> Path:
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("learn") / "corpus"
    write_synthetic_corpus(out, n_utterances=LEARN_N, seed=LEARN_SEED, test_fraction=LEARN_TEST_FRACTION)
    return out


@pytest.fixture(scope="session")
def learning_corpus_silent(tmp_path_factory) -> Path:
    """Same labels as ``learning_corpus``, every recording replaced by 3 s of silence (the control)."""
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("learn_silent") / "corpus"
    write_synthetic_corpus(out, n_utterances=LEARN_N, seed=LEARN_SEED, test_fraction=LEARN_TEST_FRACTION,
                           silence=True)
    return out


@pytest.fixture(scope="session")
def tiny_qwen2_audio_6s(tmp_path_factory) -> Path:
    from lmm_apa.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2-audio-6s", arch="qwen2-audio",
                           seed=0, audio_seconds=TINY_AUDIO_SECONDS)


def learning_run(out: Path, model: Path, corpus: Path, config: str = "tiny_demo", task: str | None = None,
                 overrides: list[str] = ()) -> dict:
    """Train on ``corpus``'s train split, assess its test split, evaluate. Returns
    ``{"train": train summary, "metrics": metrics.json, "adapter": path, "task": task, "wall_s": s}``."""
    import torch

    from lmm_apa.evaluate.run import evaluate_predictions
    from lmm_apa.infer.predict import predict_corpus
    from lmm_apa.train.run import train_from_config

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    sets = [f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", f"output_dir={out / 'train'}",
            "resume=false", *([f"tasks=[{task}]"] if task else []), *overrides]
    train = train_from_config(config, overrides=sets)
    task = task or train["tasks"][0]
    preds = out / "predictions.jsonl"
    predict_corpus(corpus, model=str(model), adapter=train["adapter"], task=task, out=preds,
                   decoding="constrained", split="test", progress=False)
    metrics = evaluate_predictions(preds, corpus, out=out / "eval", split="test")
    result = {"train": train, "metrics": metrics, "adapter": train["adapter"], "task": task,
              "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "learning_run.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def pcc(metrics: dict, level: str, aspect: str = "accuracy", expected: bool = True):
    """A PCC from metrics.json (the expected-score section by default); None where undefined."""
    node = metrics.get("expected", {}) if expected else metrics
    return (((node or {}).get(level) or {}).get(aspect) or {}).get("pcc")


@pytest.fixture(scope="session")
def qwen_learning(tmp_path_factory, tiny_qwen2_audio_6s, learning_corpus) -> dict:
    """The tiny Qwen2-Audio model fine-tuned with ``tiny_demo`` (the demo's own config)."""
    return learning_run(tmp_path_factory.mktemp("qwen_learning"), tiny_qwen2_audio_6s, learning_corpus)


# The phone-level proof: seed 001's `full` task (sentence + word + phone scores in one answer) with the
# demo's config for more epochs (measured on this corpus: phone PCC 0.14 after 150 steps, 0.51 after 450).
QWEN_FULL_OVERRIDES = ["tasks=[full]", "epochs=6"]


@pytest.fixture(scope="session")
def qwen_full_learning(tmp_path_factory, tiny_qwen2_audio_6s, learning_corpus) -> dict:
    """The tiny Qwen2-Audio model fine-tuned on the `full` task (sentence, word and phone scores)."""
    return learning_run(tmp_path_factory.mktemp("qwen_full_learning"), tiny_qwen2_audio_6s, learning_corpus,
                        overrides=QWEN_FULL_OVERRIDES)


@pytest.fixture(scope="session")
def qwen_full_learning_silent(tmp_path_factory, tiny_qwen2_audio_6s, learning_corpus_silent) -> dict:
    """The same run with every recording replaced by silence (the control for sentence and phone)."""
    return learning_run(tmp_path_factory.mktemp("qwen_full_learning_silent"), tiny_qwen2_audio_6s,
                        learning_corpus_silent, overrides=QWEN_FULL_OVERRIDES)
