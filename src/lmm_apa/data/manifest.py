"""JSONL manifests for private corpora (Wang et al. 2025's 20k-utterance corpus is of this kind).

Why JSONL: one utterance per line is what people already export from annotation tools, appends
cleanly, and a bad line can be reported by its number while the rest loads. Fields per line:

  required: ``id``, ``audio`` (path relative to the manifest, or absolute), ``text``;
  optional: ``words`` [{text, phones?, accuracy?, stress?, total?, phones-accuracy?,
  mispronunciations?}], the flat sentence fields ``accuracy fluency prosodic completeness total``
  (as in SO762's scores.json), ``speaker``, ``age``, ``gender``, ``split``, ``synthetic``.

Sentence + word levels without phones is a valid labelled corpus: words without ``phones`` get
them from ``lexicon`` (if given) then CMUdict; a word neither knows makes that utterance a failure.
Without ``words`` the words of ``text`` are looked up the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmm_apa.data.labels import LabelError, parse_sentence_scores, parse_words
from lmm_apa.data.lexicon import Lexicon, LexiconError, lookup, phones_for_text
from lmm_apa.data.schema import Audio, Corpus, LoadFailure, Utterance, Word, resolve_path

REQUIRED = ("id", "audio", "text")


def utterance_from_record(rec: dict, base: Path, corpus: str, lexicon: Lexicon | None = None) -> Utterance:
    """One manifest object -> Utterance; raises LabelError / LexiconError naming the field or word."""
    for key in REQUIRED:
        if rec.get(key) in (None, ""):
            raise LabelError(f"{key}: missing (every line needs {', '.join(REQUIRED)})")
        if not isinstance(rec[key], (str, int)):
            raise LabelError(f"{key}: expected a string, got {type(rec[key]).__name__}")

    def phones_for_word(word: str) -> list[str]:
        phones = lookup(word, lexicon)
        if phones is None:
            raise LexiconError([word])
        return phones

    if rec.get("words") is not None:
        words = parse_words(rec["words"], "words", phones_for_word)
    else:
        tokens, phones = phones_for_text(str(rec["text"]), lexicon)
        words = [Word(text=t, phones=p) for t, p in zip(tokens, phones)]
    age = rec.get("age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))):
        raise LabelError(f"age: expected a number, got {age!r}")
    return Utterance(
        id=str(rec["id"]),
        text=str(rec["text"]).strip(),
        words=words,
        audio=Audio(path=resolve_path(base, str(rec["audio"]))),
        sentence=parse_sentence_scores(rec),
        speaker=None if rec.get("speaker") is None else str(rec["speaker"]),
        age=None if age is None else int(age),
        gender=rec.get("gender"),
        corpus=corpus,
        split=rec.get("split"),
        synthetic=bool(rec.get("synthetic")),
    )


def read_manifest(path: str | Path, split: str | None = None, lexicon: Lexicon | None = None) -> Corpus:
    """Read a JSONL manifest. With ``split`` only lines whose ``split`` field matches are kept; a
    manifest with no ``split`` fields at all is one split, read whole."""
    path = Path(path)
    base = path.parent
    name = path.stem
    utterances: list[Utterance] = []
    failures: list[LoadFailure] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        lines = list(enumerate(f, 1))
    for lineno, line in lines:
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            failures.append(LoadFailure(id=f"line {lineno}", reason=f"{where}: invalid JSON ({e.msg})", source=where))
            continue
        if not isinstance(rec, dict):
            failures.append(LoadFailure(id=f"line {lineno}", reason=f"{where}: expected a JSON object", source=where))
            continue
        uid = str(rec.get("id") or f"line {lineno}")
        try:
            utt = utterance_from_record(rec, base, name, lexicon)
            if utt.id in seen:
                raise LabelError(f"id: {utt.id!r} appears twice")
        except (LabelError, LexiconError) as e:
            failures.append(LoadFailure(id=uid, reason=f"{where}: {e}", source=where))
            continue
        seen.add(utt.id)
        utterances.append(utt)
    if split is not None and any(u.split for u in utterances):
        utterances = [u for u in utterances if u.split == split]
    return Corpus(utterances=utterances, failures=failures, name=name)
