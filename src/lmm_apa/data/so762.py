"""Speechocean762 in its published Kaldi layout (OpenSLR 101 / GitHub), labelled or not.

Why a reader of the raw tree rather than only the HF copy: it is the form the corpus is published
in and the one users (and the synthetic corpus) have on disk; without ``resource/scores.json``
(as in the unlabelled 80-utterance mini copy the tests read) it still gives audio, text and canonical phones, which is all
``predict`` and ``assess`` need.

Layout read:
  ``{train,test}/wav.scp text utt2spk spk2age spk2gender`` ("id value", wav paths relative to the
  tree root), ``resource/text-phone`` (``uttid.wordindex<TAB>W_B IY0_E``; position marks
  stripped), ``resource/lexicon.txt`` (fallback for words text-phone lacks, then CMUdict), and
  ``resource/scores.json`` when present.

``scores.json``: an object mapping utterance id -> score record (see ``labels.py``). Keys starting
with ``_`` are metadata, not utterances; ``{"_meta": {"synthetic": true}}`` (or a per-record
``"synthetic": true``) marks labels made by the project's own code. An utterance missing from a
present scores.json is unlabelled; a record of the wrong shape makes that utterance a
``LoadFailure`` naming the field; a file that is not such an object at all is a ``ValueError``
naming the file (training on a corpus whose labels silently vanished would be worse).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmm_apa.data.labels import LabelError, parse_sentence_scores, parse_words
from lmm_apa.data.lexicon import LexiconError, load_lexicon, lookup, strip_position_mark
from lmm_apa.data.schema import Audio, Corpus, LoadFailure, Utterance, Word, resolve_path

SPLITS = ("train", "test")


def is_so762_tree(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (
        any((path / s / "wav.scp").is_file() for s in SPLITS) or (path / "wav.scp").is_file()
    )


def read_kaldi_map(path: Path) -> dict[str, str]:
    """A Kaldi "id value" file (tab or space separated) -> {id: value}; missing file -> {}."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(maxsplit=1)
            if parts:
                out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


def read_text_phone(path: Path) -> dict[str, dict[int, list[str]]]:
    """``uttid.wordindex<TAB>PH_B PH_E`` -> {uttid: {wordindex: [phones without marks]}}."""
    out: dict[str, dict[int, list[str]]] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            key = parts[0]
            utt, _, idx = key.rpartition(".")
            if not utt or not idx.isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'uttid.wordindex<TAB>phones', got {line.strip()!r}")
            out.setdefault(utt, {})[int(idx)] = [strip_position_mark(p) for p in parts[1:]]
    return out


def read_scores_json(path: Path) -> tuple[dict[str, Any], bool]:
    """(records by utterance id, synthetic flag of the whole file). Whole-file wrong shape -> ValueError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object mapping utterance id to its scores "
            f"({{\"000010011\": {{\"accuracy\": .., \"words\": [..]}}}}), got a {type(data).__name__}"
        )
    meta = {k: v for k, v in data.items() if k.startswith("_")}
    synthetic = bool(meta.get("_synthetic")) or bool(isinstance(meta.get("_meta"), dict) and meta["_meta"].get("synthetic"))
    return {k: v for k, v in data.items() if not k.startswith("_")}, synthetic


def _canonical_words(text: str, text_phone: dict[int, list[str]] | None, lexicon: dict[str, list[str]]) -> list[Word]:
    """Words of the transcript with phones from text-phone, else the corpus lexicon, else CMUdict."""
    tokens = text.split()
    if text_phone and max(text_phone) >= len(tokens):
        raise LabelError(
            f"resource/text-phone: word index {max(text_phone)} for a text of {len(tokens)} word(s)"
        )
    words, unknown = [], []
    for i, tok in enumerate(tokens):
        phones = (text_phone or {}).get(i) or lookup(tok, lexicon)
        if not phones:
            unknown.append(tok)
        words.append(Word(text=tok, phones=phones or []))
    if unknown:
        raise LexiconError(unknown)
    return words


def read_so762(root: str | Path, split: str | None = None, lexicon: dict[str, list[str]] | None = None) -> Corpus:
    """Read an SO762 tree; ``split`` None reads train and test (each utterance's ``split`` set)."""
    given = Path(root)
    if (given / "wav.scp").is_file():  # a split folder was given: the tree root is its parent
        root, splits = given.parent, [given.name]
    else:
        root = given
        present = [s for s in SPLITS if (root / s / "wav.scp").is_file()]
        if split is not None:
            if split not in present:
                raise ValueError(f"{root}: no split {split!r} (found: {', '.join(present) or 'none'})")
            splits = [split]
        else:
            splits = present
    resource = root / "resource"
    lex = dict(lexicon or {})
    if (resource / "lexicon.txt").is_file():
        lex = {**load_lexicon(resource / "lexicon.txt"), **lex}
    text_phone = read_text_phone(resource / "text-phone")
    scores_path = resource / "scores.json"
    scores, synthetic = read_scores_json(scores_path) if scores_path.is_file() else (None, False)

    utterances: list[Utterance] = []
    failures: list[LoadFailure] = []
    for s in splits:
        d = root / s
        wav = read_kaldi_map(d / "wav.scp")
        text = read_kaldi_map(d / "text")
        utt2spk = read_kaldi_map(d / "utt2spk")
        spk2age = read_kaldi_map(d / "spk2age")
        spk2gender = read_kaldi_map(d / "spk2gender")
        for utt_id, wav_path in wav.items():
            try:
                if wav_path.rstrip().endswith("|"):
                    raise LabelError(f"{d / 'wav.scp'}: piped wav.scp entries are not supported: {wav_path!r}")
                record = scores.get(utt_id) if scores is not None else None
                transcript = text.get(utt_id)
                if transcript is None and isinstance(record, dict) and isinstance(record.get("text"), str):
                    transcript = record["text"]
                if not transcript:
                    raise LabelError(f"{d / 'text'}: no transcript for {utt_id}")
                sentence = None
                if record is not None:
                    if not isinstance(record, dict):
                        raise LabelError(f"{scores_path}[{utt_id}]: expected an object, got {type(record).__name__}")
                    prefix = f"{scores_path.name}[{utt_id}]."
                    sentence = parse_sentence_scores(record, prefix)
                    words = parse_words(record.get("words"), f"{prefix}words") if "words" in record else None
                    if not words:
                        words = _canonical_words(transcript, text_phone.get(utt_id), lex)
                else:
                    words = _canonical_words(transcript, text_phone.get(utt_id), lex)
                spk = utt2spk.get(utt_id)
                age = spk2age.get(spk) if spk else None
                utterances.append(
                    Utterance(
                        id=utt_id,
                        text=transcript,
                        words=words,
                        audio=Audio(path=resolve_path(root, wav_path)),
                        sentence=sentence,
                        speaker=spk,
                        age=int(age) if age and age.isdigit() else None,
                        gender=spk2gender.get(spk) if spk else None,
                        corpus=root.name,
                        split=s,
                        synthetic=synthetic or bool(isinstance(record, dict) and record.get("synthetic")),
                    )
                )
            except (LabelError, LexiconError) as e:
                failures.append(LoadFailure(id=utt_id, reason=str(e), source=str(scores_path if "scores.json" in str(e) else d)))
    return Corpus(utterances=utterances, failures=failures, name=root.name)
