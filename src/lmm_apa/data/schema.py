"""The one typed form of an utterance that every corpus reader produces and every later stage reads.

Why dataclasses and not dicts: a reader for a new corpus format only has to fill these fields, and
the prompts, trainer, decoder and metrics never need to know where an utterance came from
(lhotse-style typed manifests). Scores keep the corpus' own scales:

- phone scores on SO762's 0-2 scale (the 5-expert mean: 0, 0.2, ..., 2.0); ``phone_to_model`` /
  ``phone_from_model`` convert to and from the 0-10 scale Wang et al. 2025 feeds the model (x5, exactly);
- word accuracy / total 0-10, word stress 5 or 10;
- sentence accuracy, fluency, prosodic, completeness, total 0-10.

``None`` means "not labelled" (an unlabelled SO762 tree, a private corpus without phone scores),
never "zero".
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any

import numpy as np

from lmm_apa.data.phones import heard_phones

SENTENCE_ASPECTS = ("accuracy", "fluency", "prosodic", "completeness", "total")
WORD_ASPECTS = ("accuracy", "stress", "total")
PHONE_SCALE_FACTOR = 5.0  # SO762 phone score 0-2  <->  model scale 0-10


def phone_to_model(score: float) -> float:
    """SO762 phone score (0-2) to the 0-10 scale of Wang et al. 2025's prompts."""
    return round(float(score) * PHONE_SCALE_FACTOR, 6)


def phone_from_model(score: float) -> float:
    """0-10 model-scale phone score back to SO762's 0-2 scale."""
    return round(float(score) / PHONE_SCALE_FACTOR, 6)


@dataclass
class Mispronunciation:
    """One annotated mispronunciation of a word: ``canonical`` phone at ``index`` said as ``pronounced``.

    ``pronounced`` is ``"<DEL>"`` for a dropped phone (SO762 writes it so)."""

    canonical: str
    index: int
    pronounced: str


@dataclass
class Word:
    text: str
    phones: list[str]  # canonical phones, CMUdict symbols with stress digits, no position marks
    accuracy: float | None = None
    stress: float | None = None
    total: float | None = None
    phone_scores: list[float] | None = None  # 0-2 scale, one per canonical phone
    mispronunciations: list[Mispronunciation] = field(default_factory=list)

    @property
    def pronounced_phones(self) -> list[str]:
        """The phones actually said (Ahn & Nam 2025's MDD target): canonical phones with the
        annotated mispronunciations applied, in the MDD phone convention of ``data.phones`` (no
        stress digits, ``*`` mapped to the base phone, ``<unk>`` kept, deleted phones dropped)."""
        return self.said_phones()

    def said_phones(self, keep_star: bool = False) -> list[str]:
        """``pronounced_phones``, optionally keeping Speechocean762's ``*`` marks (``L*``)."""
        return [p for p in heard_phones(self.phones, self.mispronunciations, keep_star) if p is not None]


@dataclass
class SentenceScores:
    accuracy: float | None = None
    fluency: float | None = None
    prosodic: float | None = None
    completeness: float | None = None
    total: float | None = None

    def get(self, aspect: str) -> float | None:
        return getattr(self, aspect)


@dataclass
class Audio:
    """Where the audio is: a file path, or an in-memory array (HF copies of SO762).

    Loading, downmixing and resampling happen in ``lmm_apa.data.audio``; this only points."""

    path: str | None = None
    array: np.ndarray | None = None
    sampling_rate: int | None = None
    origin: str | None = None  # where an in-memory array came from (e.g. "so762/train row 3: 000010011.WAV"), for messages

    def describe(self) -> str:
        if self.path:
            return self.path
        arr = f"<array of {0 if self.array is None else len(self.array)} samples>"
        return f"{self.origin} {arr}" if self.origin else arr


@dataclass
class Utterance:
    id: str
    text: str
    words: list[Word]
    audio: Audio
    sentence: SentenceScores | None = None
    speaker: str | None = None
    age: int | None = None
    gender: str | None = None
    corpus: str = "unknown"
    split: str | None = None
    synthetic: bool = False  # scores made by the project's own code, never real human labels

    @property
    def labelled(self) -> bool:
        """Has human (or synthetic) sentence-level scores."""
        return self.sentence is not None and any(
            self.sentence.get(a) is not None for a in SENTENCE_ASPECTS
        )

    @property
    def has_word_scores(self) -> bool:
        return bool(self.words) and all(w.accuracy is not None for w in self.words)

    @property
    def has_phone_scores(self) -> bool:
        return bool(self.words) and all(
            w.phone_scores is not None and len(w.phone_scores) == len(w.phones) for w in self.words
        )

    @property
    def canonical_phones(self) -> list[list[str]]:
        return [w.phones for w in self.words]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (audio arrays are left out; their length is kept)."""
        d = asdict(self)
        if self.audio.array is not None:
            d["audio"]["array"] = None
            d["audio"]["num_samples"] = int(len(self.audio.array))
        return d


@dataclass
class LoadFailure:
    """An utterance that could not be read: recorded, and the rest of the corpus still loads."""

    id: str
    reason: str
    source: str | None = None  # file or field that was at fault


@dataclass
class Corpus:
    """What a reader returns: the utterances it could read and the ones it could not, with why."""

    utterances: list[Utterance]
    failures: list[LoadFailure] = field(default_factory=list)
    name: str = "corpus"

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self):
        return iter(self.utterances)

    def by_id(self) -> dict[str, Utterance]:
        return {u.id: u for u in self.utterances}


def resolve_path(base: Path | str, p: str) -> str:
    """Paths in manifests and wav.scp are relative to the file that names them."""
    q = Path(p)
    return str(q if q.is_absolute() else (Path(base) / q))
