"""Helpers shared by the training tests (test_train_run, test_train_after_sft): a small synthetic
corpus and the pinned overrides of a short tiny-model run.

The overrides pin every value the tests depend on, so the tests do not move when the demo's tuning of
``tiny_demo.yaml`` does; a test's own ``extra`` overrides come last and win."""

from __future__ import annotations

from pathlib import Path


def write_small_synth(tmp_path_factory, name: str, seed: int) -> Path:
    """A 16-utterance synthetic corpus (a quarter held out), written once per test module."""
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp(name) / "synth"
    write_synthetic_corpus(out, n_utterances=16, seed=seed, test_fraction=0.25)
    return out


def train_overrides(model, corpus, out, *extra: str) -> list[str]:
    """``--set`` overrides of a short LoRA run of ``model`` on ``corpus``'s train split into ``out``."""
    return [f"model={model}", f"data.train=[{{path: {corpus}, split: train}}]", f"output_dir={out}",
            "batch_size=2", "grad_accum=1", "logging_steps=1", "limit=8", "save_steps=2", "lr=5e-3",
            "warmup_ratio=0.0", "method=lora", "save_total_limit=2", *extra]
