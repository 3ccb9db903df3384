"""The Hugging Face copy of SO762 (``mispeech/speechocean762``) kept offline: a ``save_to_disk``
folder (Dataset or DatasetDict) or parquet files (one file, or a folder such as the hub's
``data/train-00000-of-00001.parquet``).

Why the raw Arrow rows and not ``dataset[i]``: decoding the ``audio`` column through ``datasets``
needs torchcodec in recent releases; the column's storage is ``{bytes, path}`` in every release,
so reading the storage and decoding the bytes with soundfile works with any ``datasets`` version
and without any extra dependency. Audio is decoded here, once, into the utterance's array (the
issue's "audio taken from the arrays"); a row whose audio cannot be decoded is a ``LoadFailure``.

Row fields: the SO762 score fields as columns (see ``labels.py``; ``phones`` a list), plus
``speaker``, ``gender``, ``age``, ``audio``. The HF copy has no id column: the id is an ``id`` /
``utt_id`` column when there is one, else the audio file's stem (``000010011``), else
``{split}-{row}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from lmm_apa.data.audio import AudioError, decode_audio_bytes
from lmm_apa.data.labels import LabelError, parse_sentence_scores, parse_words
from lmm_apa.data.lexicon import Lexicon, LexiconError, lookup
from lmm_apa.data.schema import Audio, Corpus, LoadFailure, Utterance, Word, resolve_path

_SPLIT_IN_NAME = re.compile(r"(?:^|[/_\-.])(train|test|validation|dev)(?:[/_\-.]|$)")


def is_save_to_disk_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (
        (path / "dataset_dict.json").is_file() or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
    )


def parquet_files(path: Path) -> list[Path]:
    """The parquet files of a corpus: the file itself, or a folder's own ``*.parquet`` files, else
    those one folder down (the hub's ``data/train-00000-of-00001.parquet``, or one folder per split
    or config). Never a walk of every subfolder: a folder that is not a corpus (a home folder, a
    project tree) is refused at once instead of searched through."""
    path = Path(path)
    if path.is_file() and path.suffix == ".parquet":
        return [path]
    if not path.is_dir():
        return []
    own = sorted(f for f in path.glob("*.parquet") if f.is_file())
    return own or sorted(f for f in path.glob("*/*.parquet") if f.is_file())


def _split_of(file: Path, root: Path) -> str | None:
    m = _SPLIT_IN_NAME.search(file.relative_to(root).as_posix())
    return m.group(1) if m else None


def _rows_of_table(table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=256):
        yield from batch.to_pylist()


def _row_audio(value: Any, row_id: str, base: Path) -> Audio:
    """An HF audio cell: ``{bytes, path}`` (Audio storage), ``{array, sampling_rate}``, or a path."""
    if isinstance(value, str):
        return Audio(path=resolve_path(base, value))
    if not isinstance(value, dict):
        raise LabelError(f"audio: expected {{bytes, path}} or {{array, sampling_rate}}, got {type(value).__name__}")
    origin = f"{base.name} row {row_id}" + (f" ({value['path']})" if value.get("path") else "")
    if value.get("array") is not None:
        if not value.get("sampling_rate"):
            raise LabelError("audio.sampling_rate: missing next to the array")
        return Audio(array=np.asarray(value["array"], dtype=np.float32), sampling_rate=int(value["sampling_rate"]), origin=origin)
    if value.get("bytes"):
        array, sr = decode_audio_bytes(value["bytes"], origin)
        return Audio(array=array, sampling_rate=sr, origin=origin)
    if value.get("path"):
        return Audio(path=resolve_path(base, value["path"]))
    raise LabelError("audio: neither bytes, array nor path")


def _row_id(row: dict[str, Any], split: str | None, index: int) -> str:
    for key in ("id", "utt_id", "uttid", "utterance_id"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    audio = row.get("audio")
    path = audio.get("path") if isinstance(audio, dict) else audio if isinstance(audio, str) else None
    if path:
        return Path(path).stem
    return f"{split or 'row'}-{index:05d}"


def utterance_from_row(
    row: dict[str, Any], index: int, split: str | None, base: Path, corpus: str, lexicon: Lexicon | None = None
) -> Utterance:
    """One HF row -> Utterance; raises LabelError / LexiconError / AudioError naming the field."""
    uid = _row_id(row, split, index)
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise LabelError(f"text: expected the reference text, got {text!r}")
    if row.get("words"):
        words = parse_words(row["words"], "words", phones_for_word=lambda w: _lookup_or_raise(w, lexicon))
    else:
        words = [Word(text=t, phones=_lookup_or_raise(t, lexicon)) for t in text.split()]
    age = row.get("age")
    return Utterance(
        id=uid,
        text=text.strip(),
        words=words,
        audio=_row_audio(row.get("audio"), uid, base),
        sentence=parse_sentence_scores(row),
        speaker=None if row.get("speaker") is None else str(row["speaker"]),
        age=int(age) if isinstance(age, (int, float)) and not isinstance(age, bool) else None,
        gender=row.get("gender"),
        corpus=corpus,
        split=split,
        synthetic=bool(row.get("synthetic")),
    )


def _lookup_or_raise(word: str, lexicon: Lexicon | None) -> list[str]:
    phones = lookup(word, lexicon)
    if phones is None:
        raise LexiconError([word])
    return phones


def _read_rows(rows: Iterable[dict[str, Any]], split: str | None, base: Path, corpus: str, out: Corpus, lexicon: Lexicon | None) -> None:
    for i, row in enumerate(rows):
        try:
            out.utterances.append(utterance_from_row(row, i, split, base, corpus, lexicon))
        except (LabelError, LexiconError, AudioError) as e:
            out.failures.append(LoadFailure(id=_row_id(row, split, i), reason=str(e), source=f"{base} ({split or 'rows'})"))


def read_save_to_disk(path: str | Path, split: str | None = None, lexicon: Lexicon | None = None) -> Corpus:
    """A ``datasets`` ``save_to_disk`` folder (Dataset or DatasetDict)."""
    import datasets

    path = Path(path)
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is not None and split not in ds:
            raise ValueError(f"{path}: no split {split!r} (found: {', '.join(ds)})")
        parts = [(split, ds[split])] if split is not None else list(ds.items())
    else:
        parts = [(split, ds)]
    out = Corpus(utterances=[], failures=[], name=path.name)
    for name, d in parts:
        _read_rows(_rows_of_table(d.with_format("arrow")[:]), name, path, path.name, out, lexicon)
    return out


def read_parquet(path: str | Path, split: str | None = None, lexicon: Lexicon | None = None) -> Corpus:
    """One parquet file, or every parquet file under a folder (split taken from the file name or
    folder, e.g. ``data/test-00000-of-00001.parquet``)."""
    import pyarrow.parquet as pq

    path = Path(path)
    files = parquet_files(path)
    if not files:
        raise ValueError(f"{path}: no parquet files")
    base = path if path.is_dir() else path.parent
    tagged = [(f, _split_of(f, base)) for f in files]
    if split is not None:
        chosen = [(f, s) for f, s in tagged if s == split]
        if not chosen and not any(s for _, s in tagged):
            chosen = tagged  # one unnamed split: --split cannot select anything else
        if not chosen:
            found = sorted({s for _, s in tagged if s})
            raise ValueError(f"{path}: no parquet files for split {split!r} (found: {', '.join(found)})")
        tagged = [(f, split) for f, _ in chosen]
    name = path.stem if path.is_file() else path.name
    out = Corpus(utterances=[], failures=[], name=name)
    for f, s in tagged:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise ValueError(f"{f}: unreadable parquet file ({e})") from e
        _read_rows(_rows_of_table(table), s, base, name, out, lexicon)
    return out
