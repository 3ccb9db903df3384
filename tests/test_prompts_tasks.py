"""Tasks: instructions, targets, templates and round trips for the tasks of Wang et al. 2025 and Ahn & Nam 2025."""

from __future__ import annotations

import random
import zlib

import pytest

from lmm_apa.data.schema import Audio, Mispronunciation, SentenceScores, Utterance, Word
from lmm_apa.prompts.tasks import APA_TOKEN, MDD_TOKEN, TASK_NAMES, get_task
from lmm_apa.prompts.template import render
from prompts_utils import make_utt


def bear() -> Utterance:
    """An illustrative "WE CALL IT BEAR" in Wang et al. 2025's comprehensive format (SYNTHETIC values)."""
    words = [
        Word("WE", ["W", "IY0"], 10, 10, 10, [2.0, 2.0]),
        Word("CALL", ["K", "AO0", "L"], 10, 10, 10, [2.0, 2.0, 2.0]),
        Word("IT", ["IH0", "T"], 7, 10, 7, [1.6, 1.2]),
        Word("BEAR", ["B", "EH0", "R"], 6, 10, 6, [2.0, 1.0, 0.8], [Mispronunciation("R", 2, "<DEL>"),
                                                                  Mispronunciation("EH0", 1, "AE")]),
    ]
    return Utterance("bear", "WE CALL IT BEAR", words, Audio("bear.wav"), SentenceScores(8, 9, 9, 10.0, 8), synthetic=True)


def test_task_names_are_the_spec_names():
    assert set(TASK_NAMES) == {"full", "word-sentence", "word-accuracy", "sentence-accuracy", "sentence-fluency",
                               "sentence-prosodic", "sentence-total", "apa", "mdd"}
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")


def test_full_target_is_the_spec_example():
    assert get_task("full").target(bear()) == (
        "Sentence Scores: 8 9 9 10 8\n"
        "Word Scores: WE/10/10/10 CALL/10/10/10 IT/7/10/7 BEAR/6/10/6\n"
        "Phone Scores: W/10 IY0/10 - K/10 AO0/10 L/10 - IH0/8 T/6 - B/10 EH0/5 R/4"
    )


def test_full_instruction_is_wang2025_verbatim_with_reference():
    text = get_task("full").instruction(bear())
    assert text.startswith("You are a pronunciation evaluation teacher who analyzes speech at sentence, word and phone levels.")
    assert "Reference text: WE CALL IT BEAR.\nReference phone sequence: W IY0 - K AO0 L - IH0 T - B EH0 R.\n" in text
    assert text.endswith("Sentence Scores: {Acc} {Flu} {Pro} {Com} {Tot}\n"
                         "Word Scores: {W1}/{Acc}/{Str}/{Tot} {W2}/{Acc}/{Str}/{Tot} ...\n"
                         "Phone Scores: {P1}/{Acc} {P2}/{Acc} - {P3}/{Acc} ...")
    assert "which is either 5 or 10.\nPlease evaluate" in text


def test_apa_and_mdd_answers_follow_ahn2025():
    utt = bear()
    apa, mdd = get_task("apa"), get_task("mdd")
    assert apa.target(utt) == "{'accuracy': 8, 'fluency': 9, 'prosodic': 9, 'total': 8}"
    assert apa.instruction(utt).startswith(APA_TOKEN + "Rate the pronunciation of the audio.")
    assert "{'accuracy': ACCURACY_SCORE, 'fluency': FLUENCY_SCORE, 'prosodic': PROSODIC_SCORE, 'total': TOTAL_SCORE}" in apa.instruction(utt)
    # the phones actually said (no stress digits, data.phones' MDD convention): EH0 heard as AE, R deleted
    assert mdd.target(utt) == "{'word_transcript': 'WE CALL IT BEAR', 'phoneme_transcript': 'W IY K AO L IH T B AE'}"
    assert mdd.instruction(utt).startswith(MDD_TOKEN + "Transcribe the audio utterance")
    assert mdd.template(utt) is None
    assert apa.control_token == APA_TOKEN and get_task("full").control_token is None


def test_stress_slots_offer_only_5_and_10():
    t = get_task("full").template(bear())
    stress = [s for s in t.slots if s.aspect == "stress" and s.level == "word"]
    assert len(stress) == 4 and all(s.choices == (5, 10) for s in stress)
    assert all(s.choices == tuple(range(11)) for s in t.slots if s.aspect != "stress")


@pytest.mark.parametrize("name", [n for n in TASK_NAMES])
def test_every_task_round_trips(name):
    """target -> parse gives back every slot's value (as written: integers)."""
    task = get_task(name)
    rng = random.Random(zlib.crc32(name.encode()))
    for k in range(30):
        utt = make_utt(rng, uid=f"u{k}")
        target = task.target(utt)
        parsed = task.parse(target, utt)
        assert parsed.ok, (target, parsed)
        if name == "mdd":
            assert parsed.word_transcript == utt.text
            assert parsed.phone_transcript.split() == [p for w in utt.words for p in w.pronounced_phones]
            continue
        template = task.template(utt)
        values = task.reference_values(utt)
        assert render(template, values) == target
        assert set(parsed.values) == {s.key for s in template.slots}
        for key, value in values.items():
            assert parsed.values[key] == int(round(value)), key


def test_private_corpus_without_phones_supports_word_sentence_only():
    utt = make_utt(random.Random(1), phones=False)
    assert get_task("word-sentence").supports(utt)
    assert get_task("sentence-fluency").supports(utt)
    assert not get_task("full").supports(utt)
    assert not get_task("mdd").supports(utt)
    with pytest.raises(ValueError, match="canonical phones"):
        get_task("full").target(utt)


def test_unlabelled_utterance_gets_instruction_and_template_but_no_target():
    utt = make_utt(random.Random(2), labelled=False)
    task = get_task("full")
    assert "Reference phone sequence" in task.instruction(utt)
    assert task.template(utt).slots
    assert not task.supports(utt)
    with pytest.raises(ValueError, match="needs"):
        task.target(utt)
    assert task.reference_values(utt) == {}


def test_phone_scores_are_written_on_the_0_10_scale():
    utt = bear()
    values = get_task("full").reference_values(utt)
    assert values[("phone", "accuracy", (3, 2))] == 4.0  # 0.8 x 5
    assert values[("sentence", "completeness", None)] == 10.0
