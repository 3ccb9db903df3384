"""``lmm-apa assess``: one recording and the text the learner read -> scores at every level.

The reference text is turned into words and canonical phones (CMUdict, or ``--phones`` given
explicitly), which is all the prompt and the answer template need; the recording is then decoded like
one utterance of a corpus (``predict.assess_utterances``), which loads and checks the audio once. The native result is organised for a
front end (sentence scores; each word with its scores and its phones with theirs; expected scores
beside the argmax ones); ``output_format="azure"`` reshapes it as Azure Pronunciation Assessment.

Scale: every score is on the model's 0-10 scale (phones included; divide a phone score by 5 for
SO762's 0-2 scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmm_apa.data.schema import SENTENCE_ASPECTS, WORD_ASPECTS, Audio, Utterance, Word

FORMATS = ("native", "azure")


def reference_utterance(text: str, phones=None, uid: str = "recording", audio: Audio | None = None) -> Utterance:
    """An unlabelled utterance for ``text``: normalised words and their canonical phones
    (``phones``: explicit groups, words separated by ' - ', override the lexicon)."""
    from lmm_apa.data.lexicon import phones_for_text

    words, groups = phones_for_text(text, explicit=phones)
    return Utterance(id=uid, text=" ".join(words), words=[Word(w, list(p)) for w, p in zip(words, groups)],
                     audio=audio or Audio())


def native_result(utt: Utterance, rec: dict, duration_s: float | None = None) -> dict:
    """Prediction line -> the front-end shape (words with their phones, scores beside each)."""
    from lmm_apa.prompts.template import SlotKey, key_from_str

    scores = {key_from_str(k): v for k, v in rec.get("scores", {}).items()}
    expected = {key_from_str(k): v for k, v in rec.get("expected", {}).items()} if "expected" in rec else None

    def pick(values: dict, keys: dict) -> dict:
        return {name: values[key] for name, key in keys.items() if key in values}

    sentence_keys = {a: SlotKey.sentence(a) for a in SENTENCE_ASPECTS}
    out = {
        "text": utt.text,
        "task": rec["task"],
        "decoding": rec.get("decoding"),
        "output": rec["output"],
        "parse_ok": rec.get("parse_ok", False),
        "scale": "0-10 (phones too: divide by 5 for SO762's 0-2 scale)",
        "duration_s": duration_s,
        "sentence": pick(scores, sentence_keys),
    }
    if expected is not None:
        out["sentence_expected"] = pick(expected, sentence_keys)
    words = []
    for i, w in enumerate(utt.words):
        word_keys = {a: SlotKey.word(a, i) for a in WORD_ASPECTS}
        entry = {"index": i, "word": w.text, "scores": pick(scores, word_keys)}
        if expected is not None:
            entry["expected"] = pick(expected, word_keys)
        phones = []
        for j, p in enumerate(w.phones):
            key = SlotKey.phone(i, j)
            ph = {"phone": p, "score": scores.get(key)}
            if expected is not None and key in expected:
                ph["expected"] = expected[key]
            phones.append(ph)
        entry["phones"] = phones
        words.append(entry)
    out["words"] = words
    for name in ("word_transcript", "phone_transcript"):  # transcript tasks (mdd)
        if name in rec:
            out[name] = rec[name]
    return out


def _assess_utterance(backbone, utt: Utterance, task: str, decoding: str, output_format: str,
                      duration_s: float | None) -> dict:
    """One reference utterance (its audio not yet loaded or checked: ``prepare`` does both, once)
    -> the native or Azure result; ValueError with the reason when it cannot be assessed."""
    from lmm_apa.infer.predict import assess_utterances
    from lmm_apa.prompts.tasks import get_task

    rec = assess_utterances(backbone, get_task(task), [utt], decoding)[0]
    if "error" in rec:
        raise ValueError(rec["error"])
    result = native_result(utt, rec, duration_s=duration_s)
    if output_format == "azure":
        from lmm_apa.infer.azure import to_azure

        return to_azure(result)
    return result


def _check_format(output_format: str) -> None:
    if output_format not in FORMATS:
        raise ValueError(f"unknown format {output_format!r}; use one of {', '.join(FORMATS)}")


def assess_recording(
    audio_path,
    text: str,
    model: str | None = None,
    adapter: str | None = None,
    task: str = "full",
    decoding: str = "constrained",
    output_format: str = "native",
    phones: str | None = None,
    device: str | None = None,
    backbone=None,
) -> dict:
    """Assess one recording file (WAV/FLAC...) against ``text``; JSON-able dict. A loaded
    ``backbone`` may be passed (tests, repeated calls); otherwise ``model``/``adapter`` are loaded.
    The file is read once, when the utterance is prepared for decoding (its duration comes from
    the header)."""
    import warnings

    from lmm_apa.data.audio import audio_info
    from lmm_apa.models.loading import UntrainedTaskWarning, load_model, untrained_task_warning
    from lmm_apa.prompts.tasks import get_task

    _check_format(output_format)
    get_task(task)
    path = Path(audio_path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    utt = reference_utterance(text, phones, audio=Audio(path=str(path)))  # fails on the text before loading a model
    duration = audio_info(utt.audio).duration
    message = untrained_task_warning(adapter, task)
    if message:
        warnings.warn(message, UntrainedTaskWarning, stacklevel=2)
    if backbone is None:
        backbone = load_model(model, adapter, device)
    return _assess_utterance(backbone, utt, task, decoding, output_format, duration)


def assess_waveforms(backbone, items, task: str = "full", decoding: str = "constrained") -> list[dict]:
    """Several in-memory recordings decoded as one batch (the server's dynamic batching).

    ``items``: ``(waveform, sampling_rate, text, phones)`` tuples; ``text`` may be the
    :func:`reference_utterance` already built for it (the server checks the words before queueing,
    so they are not looked up twice). Returns one native result per item, in order, each what a
    one-item call gives; an item that fails gets ``{"error": reason}`` and the others are still
    assessed."""
    from dataclasses import replace

    from lmm_apa.infer.predict import assess_utterances
    from lmm_apa.prompts.tasks import get_task

    the_task = get_task(task)
    out: list[dict | None] = [None] * len(items)
    utts, rows = [], []
    for i, (wave, sr, text, phones) in enumerate(items):
        audio = Audio(array=np.asarray(wave, dtype=np.float32), sampling_rate=int(sr))
        try:
            ref = text if isinstance(text, Utterance) else reference_utterance(text, phones)
            utts.append(replace(ref, id=f"request-{i}", audio=audio))
            rows.append(i)
        except ValueError as e:
            out[i] = {"error": str(e)}
    for i, utt, rec in zip(rows, utts, assess_utterances(backbone, the_task, utts, decoding) if utts else []):
        duration = len(utt.audio.array) / float(utt.audio.sampling_rate)
        out[i] = {"error": rec["error"]} if "error" in rec else native_result(utt, rec, duration_s=duration)
    return out  # type: ignore[return-value]
