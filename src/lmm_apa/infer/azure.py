"""The result in the JSON shape of Azure Pronunciation Assessment, the API CALL teams already use.

Why: a team with a front end built on Azure's response can swap in a fine-tuned model without
changing it. The shape follows Azure's detailed result: ``RecognitionStatus``, ``DisplayText``,
``NBest[0]`` with ``PronunciationAssessment {AccuracyScore, FluencyScore, ProsodyScore,
CompletenessScore, PronScore}`` and ``Words [{Word, PronunciationAssessment {AccuracyScore,
ErrorType}, Phonemes [{Phoneme, PronunciationAssessment {AccuracyScore}}]}]``.

Mapping (our choices, written down):
- scores 0-10 (phones on the model's 0-10 scale) become Azure's 0-100 (x10); expected scores are
  used when present (continuous, like Azure's), else the argmax scores;
- ``PronScore`` is the model's sentence total (Azure computes it as a weighted mix; ours is trained
  to be that comprehensive score);
- ``ErrorType``: "Omission" when every phone of the word scores 0 (below 0.5: nothing of it was
  said), else
  "Mispronunciation" when the word accuracy is below 60 (Azure's documented default threshold),
  else "None". Insertions and break/monotone errors need a transcript and timing we do not produce;
- phonemes as Azure's SAPI en-US set writes them: lowercase ARPAbet without stress digits (HH -> h);
- no ``Offset``/``Duration`` per word (no alignment); ``NBest[0].Duration`` is the clip length in
  100-ns ticks when known.
"""

from __future__ import annotations

import re

MISPRONUNCIATION_THRESHOLD = 60.0
_SAPI = {"HH": "h"}


def sapi_phoneme(phone: str) -> str:
    base = re.sub(r"\d+$", "", phone.upper())
    return _SAPI.get(base, base.lower())


def _azure(score) -> float | None:
    return None if score is None else round(float(score) * 10.0, 1)


def error_type(word: dict) -> str:
    """From the same values the Azure result shows (expected scores when present)."""
    def value(d: dict) -> float | None:
        v = d.get("expected") if d.get("expected") is not None else d.get("score")
        return None if v is None else float(v)

    phones = [value(p) for p in word.get("phones", [])]
    if phones and all(v is not None and v < 0.5 for v in phones):
        return "Omission"
    acc = (word.get("expected") or {}).get("accuracy", word.get("scores", {}).get("accuracy"))
    if acc is not None and float(acc) * 10.0 < MISPRONUNCIATION_THRESHOLD:
        return "Mispronunciation"
    return "None"


def to_azure(result: dict) -> dict:
    """Azure-shaped JSON from a native ``assess`` result (see ``lmm_apa.infer.assess``)."""

    def pick(scores: dict, expected: dict | None, name: str):
        if expected and expected.get(name) is not None:
            return expected[name]
        return scores.get(name)

    sent, sent_exp = result.get("sentence", {}), result.get("sentence_expected")
    pa = {}
    for azure_name, ours in (("AccuracyScore", "accuracy"), ("FluencyScore", "fluency"), ("ProsodyScore", "prosodic"),
                             ("CompletenessScore", "completeness"), ("PronScore", "total")):
        value = _azure(pick(sent, sent_exp, ours))
        if value is not None:
            pa[azure_name] = value
    words = []
    for w in result.get("words", []):
        wpa = {}
        acc = _azure(pick(w.get("scores", {}), w.get("expected"), "accuracy"))
        if acc is not None:
            wpa["AccuracyScore"] = acc
        if w.get("scores"):
            wpa["ErrorType"] = error_type(w)
        phonemes = []
        for p in w.get("phones", []):
            entry = {"Phoneme": sapi_phoneme(p["phone"])}
            value = _azure(p.get("expected") if p.get("expected") is not None else p.get("score"))
            if value is not None:
                entry["PronunciationAssessment"] = {"AccuracyScore": value}
            phonemes.append(entry)
        entry = {"Word": w["word"].lower()}
        if wpa:
            entry["PronunciationAssessment"] = wpa
        entry["Phonemes"] = phonemes
        words.append(entry)
    text = result.get("text", "")
    nbest = {"Confidence": 1.0, "Lexical": text.lower(), "ITN": text.lower(), "MaskedITN": text.lower(), "Display": text,
             "PronunciationAssessment": pa, "Words": words}
    out = {"RecognitionStatus": "Success" if result.get("parse_ok", True) else "Error", "DisplayText": text}
    if result.get("duration_s") is not None:
        out["Offset"] = 0
        out["Duration"] = int(round(result["duration_s"] * 1e7))
        nbest["Duration"] = out["Duration"]
    out["NBest"] = [nbest]
    return out
