"""Proof that the pipeline learns (SPEC §6, issue 4.5): the tiny Qwen2-Audio-architecture model,
fine-tuned through the real training path on the synthetic corpus and assessed on held-out readings
through the real constrained + expected-score decoder, predicts scores that follow the audio; the
same run on silent recordings does not (a pipeline whose audio never reaches the model cannot pass).

Two runs: the demo's own (``qwen_learning``: tiny_demo, sentence-accuracy task; shared with the SimPO
test) and the `full` task (``qwen_full_learning``: sentence, word and phone scores in one answer),
whose silent twin is the control for both levels. Fixtures in tests/fixtures_synth.py."""

from __future__ import annotations

import pytest

from fixtures_synth import pcc

pytestmark = pytest.mark.slow


def test_tiny_qwen2_audio_learns_sentence_accuracy(qwen_learning):
    m = qwen_learning["metrics"]
    sent = pcc(m, "sentence")
    print(f"\nheld-out sentence accuracy PCC {sent} (expected score), {pcc(m, 'sentence', expected=False)} "
          f"(argmax); {qwen_learning['train']['global_step']} steps, {qwen_learning['wall_s']} s")
    assert m["parse_failures"] == 0 and m["n"] == 300
    assert sent is not None and sent >= 0.8


def test_full_task_learns_sentence_and_phone_accuracy(qwen_full_learning):
    m = qwen_full_learning["metrics"]
    sent, word, phone = pcc(m, "sentence"), pcc(m, "word"), pcc(m, "phone")
    print(f"\nfull task, held-out accuracy PCC: sentence {sent}, word {word}, phone {phone} (expected score); "
          f"{qwen_full_learning['train']['global_step']} steps, {qwen_full_learning['wall_s']} s")
    assert m["parse_failures"] == 0 and m["n"] == 300
    assert sent is not None and sent >= 0.8
    assert phone is not None and phone >= 0.5


def test_silence_control_learns_nothing(qwen_full_learning_silent):
    m = qwen_full_learning_silent["metrics"]
    sent, phone = pcc(m, "sentence"), pcc(m, "phone")
    print(f"\nsilent-audio control (full task), held-out accuracy PCC: sentence {sent}, phone {phone}")
    assert m["n"] == 300  # the control really ran and was scored
    assert (sent or 0.0) < 0.2  # an undefined PCC (constant predictions) is "learned nothing" too
    assert (phone or 0.0) < 0.2
