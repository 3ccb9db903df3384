"""One entry point for every corpus format: ``load_corpus(source, split=None) -> Corpus``.

Why dispatch on what the path is, not on a ``--format`` flag: users point the CLI at whatever they
have (an SO762 tree, a ``save_to_disk`` folder, parquet, a manifest) and the layout says which it
is unambiguously. Audio is not read here (paths stay lazy; HF copies carry arrays); ``data stats``
and ``audio.load_audio`` open the files.

Several sources (a list) are mixed for training, e.g. Wang et al. 2025's "FT + Private":
``load_corpora(["so762/", "private.jsonl"], weights=[1, 1])``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lmm_apa.data.hf import is_save_to_disk_folder, parquet_files, read_parquet, read_save_to_disk
from lmm_apa.data.manifest import read_manifest
from lmm_apa.data.mix import mix_corpora
from lmm_apa.data.schema import Corpus
from lmm_apa.data.so762 import is_so762_tree, read_so762

FORMATS = ("so762", "hf-disk", "parquet", "jsonl")


def detect_format(source: str | Path) -> str:
    """``so762`` | ``hf-disk`` | ``parquet`` | ``jsonl``; FileNotFoundError / ValueError naming the path."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if path.suffix == ".parquet":
            return "parquet"
    elif is_so762_tree(path):
        return "so762"
    elif is_save_to_disk_folder(path):
        return "hf-disk"
    elif parquet_files(path):
        return "parquet"
    raise ValueError(
        f"{path}: not a corpus this toolkit reads (expected an SO762 tree with train/ or test/wav.scp, "
        "a datasets save_to_disk folder, parquet file(s), or a .jsonl manifest)"
    )


def load_corpus(source: str | Path | Sequence[str | Path], split: str | None = None, lexicon=None) -> Corpus:
    """Read any supported corpus; a list of sources is mixed with :func:`load_corpora`.

    ``lexicon`` (WORD -> phones) is tried before the corpus' own lexicon and CMUdict for words
    without canonical phones."""
    if isinstance(source, (list, tuple)):
        return load_corpora(source, split=split, lexicon=lexicon)
    fmt = detect_format(source)
    if fmt == "so762":
        return read_so762(source, split=split, lexicon=lexicon)
    if fmt == "hf-disk":
        return read_save_to_disk(source, split=split, lexicon=lexicon)
    if fmt == "parquet":
        return read_parquet(source, split=split, lexicon=lexicon)
    return read_manifest(source, split=split, lexicon=lexicon)


def load_corpora(
    sources: Sequence[str | Path],
    split: str | None = None,
    weights: Sequence[float] | None = None,
    seed: int = 0,
    lexicon=None,
) -> Corpus:
    """Load each source and mix them (see ``mix.py``: weights, unique ids)."""
    return mix_corpora([load_corpus(s, split=split, lexicon=lexicon) for s in sources], weights=weights, seed=seed)
