"""Reading SO762-style score records into the typed schema, shared by every corpus reader.

Why one parser: ``resource/scores.json`` entries, rows of the HF copy and lines of a private JSONL
manifest carry the same fields (``accuracy``, ``fluency``, ``prosodic``, ``completeness``,
``total``, ``words[{text, accuracy, stress, total, phones, phones-accuracy, mispronunciations}]``),
so they are validated once, here, and a wrong shape is reported by the field's name
(``words[2].phones-accuracy``) instead of surfacing later as a misaligned prompt.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from lmm_apa.data.lexicon import strip_position_mark
from lmm_apa.data.schema import SENTENCE_ASPECTS, Mispronunciation, SentenceScores, Word

PHONE_RANGE = (0.0, 2.0)


class LabelError(ValueError):
    """A score record of the wrong shape; the message starts with the offending field."""


def _number(value: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabelError(f"{field}: expected a number, got {value!r}")
    if not lo <= value <= hi:
        raise LabelError(f"{field}: {value!r} is outside {lo:g}-{hi:g}")
    return float(value)


def _optional_number(entry: dict, key: str, field: str, lo: float = 0.0, hi: float = 10.0) -> float | None:
    value = entry.get(key)
    return None if value is None else _number(value, field, lo, hi)


def parse_phones(value: Any, field: str) -> list[str]:
    """``"W IY0"`` (GitHub scores.json) or ``["W", "IY0"]`` (HF copy) -> ``["W", "IY0"]``."""
    if isinstance(value, str):
        phones = value.split()
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        phones = [p.strip() for p in value if p.strip()]
    else:
        raise LabelError(f"{field}: expected phones as a string or a list of strings, got {value!r}")
    return [strip_position_mark(p) for p in phones]


def parse_sentence_scores(entry: dict, prefix: str = "") -> SentenceScores | None:
    """The flat sentence fields; ``None`` when the record carries none of them."""
    values = {a: _optional_number(entry, a, f"{prefix}{a}") for a in SENTENCE_ASPECTS}
    if all(v is None for v in values.values()):
        return None
    return SentenceScores(**values)


def parse_mispronunciations(value: Any, field: str, n_phones: int) -> list[Mispronunciation]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LabelError(f"{field}: expected a list, got {type(value).__name__}")
    out = []
    for j, m in enumerate(value):
        f = f"{field}[{j}]"
        if not isinstance(m, dict):
            raise LabelError(f"{f}: expected an object with canonical-phone, index, pronounced-phone")
        for key in ("canonical-phone", "index", "pronounced-phone"):
            if m.get(key) is None:
                raise LabelError(f"{f}.{key}: missing")
        index = m["index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < max(n_phones, 1):
            raise LabelError(f"{f}.index: {index!r} is not a phone position of a {n_phones}-phone word")
        out.append(Mispronunciation(str(m["canonical-phone"]), index, str(m["pronounced-phone"])))
    return out


def parse_word(
    w: Any,
    field: str,
    phones_for_word: Callable[[str], list[str]] | None = None,
) -> Word:
    """One word record. ``phones`` may be absent (private corpora): ``phones_for_word`` supplies
    the canonical phones then (and may raise ``LexiconError``)."""
    if not isinstance(w, dict):
        raise LabelError(f"{field}: expected an object, got {type(w).__name__}")
    text = w.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LabelError(f"{field}.text: expected the word as a non-empty string, got {text!r}")
    if w.get("phones") is not None:
        phones = parse_phones(w["phones"], f"{field}.phones")
    elif phones_for_word is not None:
        phones = phones_for_word(text)
    else:
        raise LabelError(f"{field}.phones: missing")
    phone_scores = w.get("phones-accuracy")
    if phone_scores is not None:
        if not isinstance(phone_scores, (list, tuple)):
            raise LabelError(f"{field}.phones-accuracy: expected a list of 0-2 scores, got {phone_scores!r}")
        if len(phone_scores) != len(phones):
            raise LabelError(
                f"{field}.phones-accuracy: {len(phone_scores)} score(s) for {len(phones)} phone(s) {' '.join(phones)}"
            )
        phone_scores = [_number(s, f"{field}.phones-accuracy[{k}]", *PHONE_RANGE) for k, s in enumerate(phone_scores)]
    return Word(
        text=text.strip(),
        phones=phones,
        accuracy=_optional_number(w, "accuracy", f"{field}.accuracy"),
        stress=_optional_number(w, "stress", f"{field}.stress"),
        total=_optional_number(w, "total", f"{field}.total"),
        phone_scores=phone_scores,
        mispronunciations=parse_mispronunciations(w.get("mispronunciations"), f"{field}.mispronunciations", len(phones)),
    )


def parse_words(
    value: Any,
    field: str = "words",
    phones_for_word: Callable[[str], list[str]] | None = None,
) -> list[Word]:
    if not isinstance(value, list):
        raise LabelError(f"{field}: expected a list of word objects, got {type(value).__name__}")
    return [parse_word(w, f"{field}[{i}]", phones_for_word) for i, w in enumerate(value)]
