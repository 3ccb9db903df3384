"""MDD phone convention and scoring (Ahn & Nam 2025): one convention for targets, predictions and
metrics, so a prediction equal to the annotation scores WER 0, PER 0, P = R = F1 = 1, under every
annotation shape of the Hugging Face copy of Speechocean762 (phones as lists with stress digits,
``mispronunciations`` with ``<DEL>``, ``<unk>``, ``*``) and under alignment ties.

All labels here are SYNTHETIC (made up by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmm_apa.data.hf import utterance_from_row
from lmm_apa.data.phones import CMU_PHONES, normalise_phone, normalise_transcript
from lmm_apa.data.schema import Audio, Mispronunciation, Utterance, Word
from lmm_apa.evaluate.mdd import MddAccumulator, diagnose, heard_phones, mdd_counts
from lmm_apa.prompts.tasks import get_task


def hf_row(words: list[dict], text: str | None = None) -> dict:
    """A row in the HF copy's shape (``mispeech/speechocean762``), SYNTHETIC scores."""
    return {"text": text or " ".join(w["text"] for w in words), "accuracy": 6, "fluency": 7, "prosodic": 7,
            "completeness": 10.0, "total": 6, "words": words, "audio": "x.wav", "synthetic": True}


def hf_word(text: str, phones: list[str], mis: list[tuple[int, str]]) -> dict:
    return {"text": text, "phones": phones, "phones-accuracy": [0.0 if any(i == k for k, _ in mis) else 2.0 for i in range(len(phones))],
            "accuracy": 5, "stress": 10, "total": 5,
            "mispronunciations": [{"canonical-phone": phones[i], "index": i, "pronounced-phone": p} for i, p in mis]}


ROW = hf_row([
    hf_word("SEE", ["S", "IY1"], []),
    hf_word("SLOW", ["S", "L", "OW1"], [(0, "<DEL>"), (1, "L*")]),
    hf_word("HIGH", ["HH", "AY1"], [(0, "<unk>")]),
    hf_word("BEAR", ["B", "EH0", "R"], [(1, "AE"), (2, "<DEL>")]),
])


def score(utt: Utterance, output: str, keep_star: bool = False) -> dict:
    parsed = get_task("mdd").parse(output, utt)
    assert parsed.ok, parsed
    acc = MddAccumulator(keep_star=keep_star)
    acc.add(utt, parsed.word_transcript, parsed.phone_transcript)
    return acc.result()


def test_target_follows_the_convention_on_hf_annotation_shapes():
    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    target = get_task("mdd").target(utt)
    # no stress digits, L* read as L, <unk> kept, <DEL> removed
    assert target == "{'word_transcript': 'SEE SLOW HIGH BEAR', 'phoneme_transcript': 'S IY L OW <unk> AY B AE'}"
    assert utt.words[1].said_phones(keep_star=True) == ["L*", "OW"]
    m = score(utt, target)
    assert (m["wer"], m["per"], m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 1.0, 1.0, 1.0)
    # S deleted, <unk>, AE, R deleted: four true rejections, all diagnosed right; L* counts as L
    assert m["counts"] == {"ta": 6, "fr": 0, "fa": 0, "tr": 4, "correct_diagnosis": 4}


def test_star_kept_by_option_is_a_phone_of_its_own():
    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    starred = "{'word_transcript': 'SEE SLOW HIGH BEAR', 'phoneme_transcript': 'S IY L* OW <unk> AY B AE'}"
    m = score(utt, starred, keep_star=True)
    assert (m["per"], m["precision"], m["recall"]) == (0.0, 1.0, 1.0) and m["counts"]["tr"] == 5
    plain = get_task("mdd").target(utt)
    m = score(utt, plain, keep_star=True)  # L said for the annotators' L*: one substitution, one missed error
    assert m["per"] == pytest.approx(1 / 8) and m["counts"]["fa"] == 1
    assert score(utt, starred)["per"] == 0.0  # by default L* and L are the same phone


def test_unk_is_a_token_that_only_unk_matches():
    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    guessed = get_task("mdd").target(utt).replace("<unk>", "HH")
    m = score(utt, guessed)
    assert m["per"] == pytest.approx(1 / 8)  # one substitution in eight heard phones
    assert m["counts"]["fa"] == 1  # HH written where the annotators heard something unrecognisable
    other = get_task("mdd").target(utt).replace("<unk>", "K")
    m = score(utt, other)
    assert m["counts"]["tr"] == 4 and m["counts"]["correct_diagnosis"] == 3


def test_alignment_tie_scores_full_marks():
    # canonical S IY: the S left out, the IY heard as S. The heard "S" aligns as cheaply to the
    # canonical S as to the IY; the diagnosis must follow the annotation's indices.
    canonical, heard = ["S", "IY"], [None, "S"]
    assert diagnose(canonical, heard, ["S"]) == [None, "S"]
    assert mdd_counts(canonical, heard, ["S"]) == {"ta": 0, "fr": 0, "fa": 0, "tr": 2, "correct_diagnosis": 2}
    # the issue's case: a prediction equal to what the annotators heard, S IY OW L*
    utt = Utterance("u", "SEE SLOW", [Word("SEE", ["S", "IY1"]),
                                       Word("SLOW", ["S", "L", "OW1"], mispronunciations=[
                                           Mispronunciation("S", 0, "<DEL>"), Mispronunciation("L", 1, "OW"),
                                           Mispronunciation("OW1", 2, "L*")])], Audio(path="u.wav"))
    m = score(utt, "{'word_transcript': 'SEE SLOW', 'phoneme_transcript': 'S IY OW L*'}", keep_star=True)
    assert m["counts"]["tr"] == 3 and m["counts"]["correct_diagnosis"] == 3 and m["per"] == 0.0


def test_diagnosis_of_a_deleted_phone_the_prediction_says():
    canonical, heard = ["B", "EH", "R"], ["B", "EH", None]
    assert diagnose(canonical, heard, ["B", "EH", "R"]) == ["B", "EH", "R"]  # false acceptance
    assert mdd_counts(canonical, heard, ["B", "EH", "R"])["fa"] == 1
    assert diagnose(canonical, heard, ["B", "EH", "D"]) == ["B", "EH", "D"]  # rejected, wrong diagnosis
    assert diagnose(canonical, heard, ["EH"]) == [None, "EH", None]


def test_phone_normalisation_rules():
    assert normalise_phone("IY0") == "IY" and normalise_phone("l*") == "L" and normalise_phone("L*", keep_star=True) == "L*"
    assert normalise_phone("<DEL>") is None and normalise_phone("<UNK>") == "<unk>" and normalise_phone("AX") == "AH"
    assert normalise_phone("Q") == "<unk>"  # a symbol outside the inventory names no phone we can write
    assert normalise_transcript("W - IY1 <unk> | K") == ["W", "IY", "<unk>", "K"]


# --------------------------------------------------------------------------- property
_PRONOUNCED = st.one_of(
    st.sampled_from(["<DEL>", "<unk>"]),
    st.builds(lambda p, d, star: p + d + star, st.sampled_from(CMU_PHONES), st.sampled_from(["", "0", "1", "2"]),
              st.sampled_from(["", "*"])),
)


@st.composite
def annotated_words(draw):
    words = []
    for k in range(draw(st.integers(1, 5))):
        phones = draw(st.lists(st.builds(lambda p, d: p + d, st.sampled_from(CMU_PHONES), st.sampled_from(["", "0", "1"])),
                               min_size=1, max_size=5))
        indices = draw(st.lists(st.integers(0, len(phones) - 1), unique=True, max_size=len(phones)))
        mis = [Mispronunciation(phones[i], i, draw(_PRONOUNCED)) for i in indices]
        words.append(Word("WORD" + "ABCDE"[k], phones, mispronunciations=mis))
    return words


@settings(max_examples=200, deadline=None)
@given(annotated_words(), st.booleans())
def test_prediction_equal_to_annotation_always_scores_full_marks(words, keep_star):
    utt = Utterance("u", " ".join(w.text for w in words), words, Audio(path="u.wav"))
    phones = " ".join(p for w in words for p in w.said_phones(keep_star))
    m = score(utt, f"{{'word_transcript': '{utt.text}', 'phoneme_transcript': '{phones}'}}", keep_star)
    c = m["counts"]
    assert c["fr"] == 0 and c["fa"] == 0 and c["correct_diagnosis"] == c["tr"]
    assert m["wer"] == 0.0 and m["per"] in (0.0, None)  # None: every phone deleted
    canonical, heard = heard_phones(utt, keep_star)
    mispronounced = sum(h != can for can, h in zip(canonical, heard))
    assert c["tr"] == mispronounced
    if mispronounced:
        assert (m["precision"], m["recall"], m["f1"]) == (1.0, 1.0, 1.0)


def test_hf_copy_round_trip_keeps_every_annotation_shape(tmp_path):
    """The same annotations written as a ``save_to_disk`` copy with the HF dataset's features, read
    back by the corpus reader: the target and a perfect prediction score as above."""
    import datasets as ds

    from fixtures_data import hf_features
    from lmm_apa.data.corpus import load_corpus

    feats = hf_features()
    row = {k: ROW[k] for k in ("text", "accuracy", "fluency", "prosodic", "completeness", "total")}
    row["words"] = [{**w, "phones-accuracy": [float(x) for x in w["phones-accuracy"]]} for w in ROW["words"]]
    row.update(speaker="0001", gender="f", age=9, synthetic=True, audio={"bytes": None, "path": "000010001.WAV"})
    ds.DatasetDict({"test": ds.Dataset.from_list([row], features=feats)}).save_to_disk(str(tmp_path / "hf"))
    corpus = load_corpus(tmp_path / "hf", split="test")
    assert not corpus.failures, corpus.failures
    utt = corpus.utterances[0]
    assert [m.pronounced for m in utt.words[1].mispronunciations] == ["<DEL>", "L*"]
    target = get_task("mdd").target(utt)
    assert target.endswith("'phoneme_transcript': 'S IY L OW <unk> AY B AE'}")
    m = score(utt, target)
    assert (m["wer"], m["per"], m["precision"], m["recall"]) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("junk, warned", [(1, False), (2, True)])
def test_runs_with_many_unparsed_answers_are_flagged(junk, warned):
    """More than 5 % of a task's answers unparsed: a warning in metrics.json and in report.md (the
    figures then cover the parsed answers only); the junk itself is never scored."""
    from lmm_apa.evaluate.report import render_report
    from lmm_apa.evaluate.run import evaluate_records

    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    refs, records = {}, []
    for k in range(20):
        u = Utterance(f"u{k}", utt.text, utt.words, utt.audio)
        refs[u.id] = u
        output = get_task("mdd").target(u)
        if k < junk:
            output = "{'word_transcript': 'phoneme_transcript': 'phoneme_transcript': 'phoneme_transcript'"
        records.append({"id": u.id, "task": "mdd", "output": output})
    metrics, _ = evaluate_records(records, refs)
    assert metrics["tasks"]["mdd"]["parse_failures"] == junk and metrics["mdd"]["n"] == 20 - junk
    assert metrics["tasks"]["mdd"]["parse_failure_rate"] == pytest.approx(junk / 20)
    assert metrics["mdd"]["per"] == 0.0 and metrics["mdd"]["recall"] == 1.0
    assert bool(metrics["warnings"]) is warned
    report = render_report(metrics)
    assert ("**Warning:** mdd: 2 of 20 answers (10%) could not be parsed" in report) is warned


def test_evaluation_scores_mdd_in_the_tasks_keep_star_convention():
    """evaluate uses the mdd task's keep_star (as its targets and grammar do), not the default."""
    from dataclasses import replace

    from lmm_apa.evaluate.run import evaluate_records

    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    starred_task = replace(get_task("mdd"), keep_star=True)
    assert "L*" in starred_task.target(utt)
    plain = {"id": utt.id, "task": "mdd", "output": get_task("mdd").target(utt)}  # L said for the annotators' L*
    kept, _ = evaluate_records([plain], {utt.id: utt}, tasks={"mdd": starred_task})
    assert kept["mdd"]["per"] == pytest.approx(1 / 8) and "* kept" in kept["mdd"]["phone_convention"]
    default, _ = evaluate_records([plain], {utt.id: utt})
    assert default["mdd"]["per"] == 0.0  # the registered task reads L* as L


def test_keep_star_option_reaches_training_prediction_and_evaluation(tmp_path, monkeypatch):
    """One switch per stage, the same convention in each: training targets (``mdd_keep_star``),
    ``predict --keep-star`` (the task handed to the predictor) and ``evaluate --keep-star``."""
    from typer.testing import CliRunner

    import lmm_apa.evaluate.run as run
    import lmm_apa.infer.predict as predict
    from lmm_apa.cli import app
    from lmm_apa.train.config import TrainConfig
    from lmm_apa.train.dataset import SkipLog, build_examples

    utt = utterance_from_row(ROW, 0, "test", Path("."), "so762")
    assert "L*" in get_task("mdd", keep_star=True).target(utt) and "L*" not in get_task("mdd").target(utt)
    assert get_task("apa", keep_star=True) == get_task("apa")  # score tasks have no phones to keep
    starred, _ = build_examples([utt], ["mdd"], SkipLog(None), keep_star=True)
    plain, _ = build_examples([utt], ["mdd"], SkipLog(None))
    assert "L*" in starred[0].target and "L*" not in plain[0].target
    assert TrainConfig.model_fields["mdd_keep_star"].default is False

    seen = {}
    monkeypatch.setattr(predict, "predict_corpus", lambda source, **kw: seen.update(kw) or {"ok": True})
    monkeypatch.setattr(run, "evaluate_predictions", lambda preds, ref, **kw: seen.update(kw) or {"ok": True})
    out = str(tmp_path / "p.jsonl")
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--task", "mdd", "--keep-star", "--out", out])
    assert result.exit_code == 0, result.output
    assert seen["task"].keep_star is True
    result = CliRunner().invoke(app, ["evaluate", out, "--reference", str(tmp_path), "--keep-star"])
    assert result.exit_code == 0, result.output
    assert seen["tasks"]["mdd"].keep_star is True
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--task", "apa", "--keep-star", "--out", out])
    assert result.exit_code == 2 and "mdd task only" in result.output
    assert seen["tasks"]["mdd"].name == "mdd"  # the task keeps its name: prediction lines still say "mdd"
