"""Fixtures for the data area (see conftest.py): small corpora in every format, written by the tests.

All scores written here are SYNTHETIC (made up by this module, marked ``"_meta": {"synthetic":
true}`` in scores.json and ``"synthetic": true`` in rows/lines): real SO762 labels are not
available to the tests. Audio is short generated tones (soundfile), distinct per utterance.

Reusable by other areas: ``so762_labelled_tree``, ``so762_unlabelled_tree``, ``hf_disk_copy``,
``parquet_copy``, ``jsonl_manifest``, ``mini_so762`` (the real 80-utterance unlabelled tree), and
the writers ``write_so762_tree``, ``write_hf_copy``, ``write_manifest``, ``write_tone``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16_000
MINI_SO762 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speechocean762-mini"

# id, speaker, split, text, canonical phones per word (CMUdict, SO762 style with stress digits)
FIXTURE_UTTERANCES = [
    ("000010001", "0001", "train", "WE CALL IT BEAR", [["W", "IY1"], ["K", "AO1", "L"], ["IH1", "T"], ["B", "EH1", "R"]]),
    ("000010002", "0001", "train", "I LIKE BLUE FISH", [["AY1"], ["L", "AY1", "K"], ["B", "L", "UW1"], ["F", "IH1", "SH"]]),
    ("000020001", "0002", "train", "DON'T STOP NOW", [["D", "OW1", "N", "T"], ["S", "T", "AA1", "P"], ["N", "AW1"]]),
    ("000030001", "0003", "test", "THE CAT SAT", [["DH", "AH0"], ["K", "AE1", "T"], ["S", "AE1", "T"]]),
    ("000030002", "0003", "test", "HELLO WORLD", [["HH", "AH0", "L", "OW1"], ["W", "ER1", "L", "D"]]),
    ("000040001", "0004", "test", "A GOOD DAY", [["AH0"], ["G", "UH1", "D"], ["D", "EY1"]]),
]
SPEAKERS = {"0001": (8, "f"), "0002": (31, "m"), "0003": (10, "m"), "0004": (25, "f")}


def tone(seconds: float = 0.6, freq: float = 220.0, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def write_tone(path: Path, seconds: float = 0.6, freq: float = 220.0, sr: int = SR, channels: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, freq, sr, channels), sr, subtype="PCM_16")
    return path


def synthetic_scores(index: int, phones: list[list[str]], text: str) -> dict:
    """A scores.json record in the published schema, with made-up (SYNTHETIC) values that vary by
    utterance and by word so a reader that mixes fields up is caught."""
    words = []
    for j, (w, ph) in enumerate(zip(text.split(), phones)):
        acc = 10 - ((index + j) % 4)
        pa = [round(2.0 - 0.4 * ((index + j + k) % 6), 1) for k in range(len(ph))]
        mis = [] if min(pa) >= 1.0 else [{"canonical-phone": ph[pa.index(min(pa))], "index": pa.index(min(pa)), "pronounced-phone": "<DEL>"}]
        words.append({
            "text": w, "accuracy": acc, "stress": 10 if (index + j) % 5 else 5, "total": acc,
            "phones": " ".join(ph), "phones-accuracy": pa, "mispronunciations": mis,
        })
    return {
        "text": text, "accuracy": 6 + index % 4, "completeness": 10.0, "fluency": 7 + index % 3,
        "prosodic": 5 + index % 5, "total": 6 + index % 4, "words": words,
    }


def write_so762_tree(root: Path, labelled: bool = True, utterances=FIXTURE_UTTERANCES, phones_as_list: bool = False) -> Path:
    """An SO762 tree in the published Kaldi layout (wav paths relative to the root, tabs and
    spaces as in the real files), optionally with a SYNTHETIC resource/scores.json."""
    root = Path(root)
    (root / "resource").mkdir(parents=True, exist_ok=True)
    scores: dict = {"_meta": {"synthetic": True, "note": "made-up test labels, not human scores"}}
    lexicon: dict[str, list[str]] = {}
    text_phone = []
    for split in ("train", "test"):
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        rows = [u for u in utterances if u[2] == split]
        spks = sorted({u[1] for u in rows})
        (d / "wav.scp").write_text("".join(f"{uid}\tWAVE/SPEAKER{spk}/{uid}.WAV\n" for uid, spk, *_ in rows))
        (d / "text").write_text("".join(f"{uid}\t{text}\n" for uid, _, _, text, _ in rows))
        (d / "utt2spk").write_text("".join(f"{uid} {spk}\n" for uid, spk, *_ in rows))
        (d / "spk2utt").write_text("".join(f"{s} " + " ".join(u[0] for u in rows if u[1] == s) + "\n" for s in spks))
        (d / "spk2age").write_text("".join(f"{s}\t{SPEAKERS[s][0]}\n" for s in spks))
        (d / "spk2gender").write_text("".join(f"{s}\t{SPEAKERS[s][1]}\n" for s in spks))
    for i, (uid, spk, split, text, phones) in enumerate(utterances):
        write_tone(root / "WAVE" / f"SPEAKER{spk}" / f"{uid}.WAV", seconds=0.5 + 0.1 * i, freq=200 + 40 * i)
        for j, (w, ph) in enumerate(zip(text.split(), phones)):
            lexicon.setdefault(w, ph)
            marks = [f"{p}_S" for p in ph] if len(ph) == 1 else [f"{ph[0]}_B"] + [f"{p}_I" for p in ph[1:-1]] + [f"{ph[-1]}_E"]
            text_phone.append(f"{uid}.{j}\t{' '.join(marks)}\n")
        rec = synthetic_scores(i, phones, text)
        if phones_as_list:
            for w in rec["words"]:
                w["phones"] = w["phones"].split()
        scores[uid] = rec
    (root / "resource" / "lexicon.txt").write_text("".join(f"{w}\t{' '.join(p)}\n" for w, p in sorted(lexicon.items())))
    (root / "resource" / "text-phone").write_text("".join(text_phone))
    if labelled:
        (root / "resource" / "scores.json").write_text(json.dumps(scores, indent=1))
    return root


def _hf_rows(split: str) -> list[dict]:
    rows = []
    for i, (uid, spk, s, text, phones) in enumerate(FIXTURE_UTTERANCES):
        if s != split:
            continue
        rec = synthetic_scores(i, phones, text)
        for w in rec["words"]:
            w["phones"] = w["phones"].split()  # the HF copy stores phones as a list
        buf = io.BytesIO()
        sf.write(buf, tone(0.5 + 0.1 * i, 200 + 40 * i), SR, format="WAV", subtype="PCM_16")
        rows.append({
            **{k: rec[k] for k in ("accuracy", "completeness", "fluency", "prosodic", "text", "total", "words")},
            "speaker": spk, "gender": SPEAKERS[spk][1], "age": SPEAKERS[spk][0], "synthetic": True,
            "audio": {"bytes": buf.getvalue(), "path": f"{uid}.WAV"},
        })
    return rows


def hf_features():
    """The features of ``mispeech/speechocean762`` (its dataset card), plus our ``synthetic`` flag;
    ``audio`` as its storage struct here (cast to ``datasets.Audio`` in ``write_hf_copy``)."""
    import datasets as ds

    mis = [{"canonical-phone": ds.Value("string"), "index": ds.Value("int64"), "pronounced-phone": ds.Value("string")}]
    word = {
        "accuracy": ds.Value("int64"), "phones": ds.List(ds.Value("string")), "phones-accuracy": ds.List(ds.Value("float64")),
        "stress": ds.Value("int64"), "text": ds.Value("string"), "total": ds.Value("int64"), "mispronunciations": mis,
    }
    return ds.Features({
        "accuracy": ds.Value("int64"), "completeness": ds.Value("float64"), "fluency": ds.Value("int64"),
        "prosodic": ds.Value("int64"), "text": ds.Value("string"), "total": ds.Value("int64"), "words": [word],
        "speaker": ds.Value("string"), "gender": ds.Value("string"), "age": ds.Value("int64"),
        "synthetic": ds.Value("bool"), "audio": {"bytes": ds.Value("binary"), "path": ds.Value("string")},
    })


def write_hf_copy(out: Path, kind: str = "disk") -> Path:
    """The HF copy's schema as a ``save_to_disk`` DatasetDict (kind="disk") or as the hub's parquet
    layout ``data/{split}-00000-of-00001.parquet`` (kind="parquet")."""
    import datasets as ds

    out = Path(out)
    feats = hf_features()
    dd = ds.DatasetDict({s: ds.Dataset.from_list(_hf_rows(s), features=feats) for s in ("train", "test")})
    # Rows are built with the Audio column's storage ({bytes, path}) and then cast to the Audio
    # feature: encoding arrays through datasets would need torchcodec, which the test environment lacks.
    dd = dd.cast_column("audio", ds.Audio(sampling_rate=SR))
    if kind == "disk":
        dd.save_to_disk(str(out))
    else:
        (out / "data").mkdir(parents=True, exist_ok=True)
        for s, d in dd.items():
            d.to_parquet(str(out / "data" / f"{s}-00000-of-00001.parquet"))
    return out


def write_manifest(path: Path, extra_lines: list[str] | None = None) -> Path:
    """A private-corpus JSONL manifest with sentence + word levels only (no phones, no phone
    scores), audio in a sub-folder, paths relative to the manifest. SYNTHETIC scores."""
    path = Path(path)
    lines = []
    for i, (uid, spk, split, text, phones) in enumerate(FIXTURE_UTTERANCES):
        write_tone(path.parent / "audio" / f"p{uid}.flac", seconds=0.5 + 0.05 * i, freq=300 + 30 * i)
        rec = synthetic_scores(i, phones, text)
        lines.append(json.dumps({
            "id": f"p{uid}", "audio": f"audio/p{uid}.flac", "text": text.lower().capitalize() + ".",
            "speaker": f"P{spk}", "age": SPEAKERS[spk][0], "gender": SPEAKERS[spk][1], "split": split, "synthetic": True,
            **{k: rec[k] for k in ("accuracy", "fluency", "prosodic", "completeness", "total")},
            "words": [{k: w[k] for k in ("text", "accuracy", "stress", "total")} for w in rec["words"]],
        }))
    path.write_text("\n".join(lines + list(extra_lines or [])) + "\n")
    return path


@pytest.fixture(scope="session")
def so762_labelled_tree(tmp_path_factory) -> Path:
    return write_so762_tree(tmp_path_factory.mktemp("so762_labelled"), labelled=True)


@pytest.fixture(scope="session")
def so762_unlabelled_tree(tmp_path_factory) -> Path:
    return write_so762_tree(tmp_path_factory.mktemp("so762_unlabelled"), labelled=False)


@pytest.fixture(scope="session")
def hf_disk_copy(tmp_path_factory) -> Path:
    return write_hf_copy(tmp_path_factory.mktemp("hf_disk") / "so762", kind="disk")


@pytest.fixture(scope="session")
def parquet_copy(tmp_path_factory) -> Path:
    return write_hf_copy(tmp_path_factory.mktemp("hf_parquet") / "so762", kind="parquet")


@pytest.fixture(scope="session")
def jsonl_manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("private") / "private.jsonl")


@pytest.fixture(scope="session")
def mini_so762() -> Path:
    """The real 80-utterance SO762 tree (unlabelled), beside the repository; never copied."""
    if not (MINI_SO762 / "train" / "wav.scp").is_file():
        pytest.skip(f"real SO762 mini corpus not present at {MINI_SO762}")
    return MINI_SO762.resolve()
