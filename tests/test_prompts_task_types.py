"""Tasks as types: each task object says which decodings and metric sections it has, what a
prediction line holds, and each score line both writes and reads its own part of the answer."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from lmm_apa.data.schema import Audio
from lmm_apa.prompts.parsing import DictAnswer, PhoneLine, SentenceLine, WordLine, build_template, parse_layout
from lmm_apa.prompts.tasks import TASK_NAMES, ScoreTask, TranscriptTask, get_task
from lmm_apa.prompts.template import SlotKey, key_from_str, key_to_str, render
from prompts_utils import make_utt

SCORE_TASKS = [n for n in TASK_NAMES if n != "mdd"]


def test_score_tasks_offer_free_and_constrained_decoding_mdd_free_only():
    for name in SCORE_TASKS:
        task = get_task(name)
        assert isinstance(task, ScoreTask)
        assert task.decodings == ("free", "constrained")
        assert task.decoding_for("constrained") == "constrained" and task.decoding_for("free") == "free"
    mdd = get_task("mdd")
    assert isinstance(mdd, TranscriptTask)
    assert mdd.decodings[0] == "free"
    for asked in ("free", "constrained"):  # falls back to its first decoding when it lacks the asked one
        assert mdd.decoding_for(asked) == (asked if asked in mdd.decodings else "free")


def test_metric_sections_follow_the_answer():
    assert get_task("full").metric_sections == ("sentence", "word", "phone")
    assert get_task("word-sentence").metric_sections == ("sentence", "word")
    assert get_task("word-accuracy").metric_sections == ("word",)
    assert get_task("apa").metric_sections == ("sentence",)
    assert get_task("sentence-fluency").metric_sections == ("sentence",)
    assert get_task("mdd").metric_sections == ("mdd",)
    assert get_task("mdd").aspects == () and get_task("mdd").template(make_utt(random.Random(0))) is None


def test_answer_fields_are_scores_or_transcripts():
    utt = make_utt(random.Random(3))
    full, mdd = get_task("full"), get_task("mdd")
    fields = full.answer_fields(full.parse(full.target(utt), utt))
    assert set(fields) == {"scores"}
    assert fields["scores"]["sentence.accuracy"] == round(utt.sentence.accuracy)
    fields = mdd.answer_fields(mdd.parse(mdd.target(utt), utt))
    assert set(fields) == {"word_transcript", "phone_transcript"}
    assert fields["word_transcript"] == utt.text


def test_slot_keys_are_named_and_equal_the_plain_tuples():
    key = SlotKey.phone(3, 1)
    assert key == ("phone", "accuracy", (3, 1)) and key.level == "phone" and key.index == (3, 1)
    assert hash(SlotKey.sentence("fluency")) == hash(("sentence", "fluency", None))
    assert SlotKey.word("stress", 2).aspect_pair == ("word", "stress")
    for k in (SlotKey.sentence("total"), SlotKey.word("accuracy", 0), key):
        back = key_from_str(key_to_str(k))
        assert back == k and isinstance(back, SlotKey)
    template = get_task("full").template(make_utt(random.Random(4)))
    assert all(isinstance(s.key, SlotKey) for s in template.slots)
    parsed = get_task("full").parse(get_task("full").target(make_utt(random.Random(4))), make_utt(random.Random(4)))
    assert all(isinstance(k, SlotKey) for k in parsed.values)


@pytest.mark.parametrize("line", [
    SentenceLine("Sentence Scores", ("accuracy", "total")),
    WordLine("Word Scores", ("accuracy", "stress")),
    PhoneLine("Phone Scores"),
    DictAnswer(("accuracy", "fluency")),
], ids=lambda line: type(line).__name__)
def test_each_line_reads_back_what_it_writes(line):
    rng = random.Random(7)
    words, phones = ["WE", "CALL", "IT"], [["W", "IY0"], ["K", "AO0", "L"], ["IH0", "T"]]
    template = build_template([line], words, phones)
    values = {s.key: rng.choice(s.choices) for s in template.slots}
    assert values, "a line writes at least one slot"
    text = render(template, values)
    parsed = parse_layout(text, [line], list(values), words, phones)
    assert parsed.ok and parsed.values == values


@dataclass
class _FakeBackbone:
    sampling_rate: int = 16000
    max_audio_seconds: float = 30.0


def test_predictor_dispatches_constrained_decoding_on_the_task_class(monkeypatch):
    """The hook a transcript (grammar) decoder plugs into: a task class that declares "constrained"
    gets its registered decoder, with the prepared rows."""
    from lmm_apa.infer import predict
    from lmm_apa.infer.generate import Decoded

    @dataclass(frozen=True)
    class GrammarTranscriptTask(TranscriptTask):
        decodings = ("free", "constrained")

    task = GrammarTranscriptTask("mdd", None, lambda utt: "transcribe")
    seen = []

    def grammar_decoder(backbone, task_, prepared, lookahead):
        seen.append([p.utt.id for p in prepared])
        return [Decoded(output=task_.target(p.utt), decoding="constrained-grammar") for p in prepared]

    monkeypatch.setitem(predict.CONSTRAINED_DECODERS, GrammarTranscriptTask, grammar_decoder)
    utts = [make_utt(random.Random(k), uid=f"g{k}") for k in range(2)]
    tone = (0.1 * np.sin(np.arange(1600) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    for u in utts:
        u.audio = Audio(array=tone, sampling_rate=16000)
    recs = predict.assess_utterances(_FakeBackbone(), task, utts, "constrained")
    assert seen == [["g0", "g1"]], recs
    assert [r["decoding"] for r in recs] == ["constrained-grammar"] * 2
    assert recs[0]["word_transcript"] == utts[0].text and recs[0]["parse_ok"]
