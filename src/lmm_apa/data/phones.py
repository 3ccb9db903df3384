"""The one phone convention of the MDD task (Ahn & Nam 2025): what the model is trained to write,
what the parser and the constrained decoder accept, and what the metrics compare.

Why one module: the training target, the prediction and the evaluation must spell a phone the same
way, or a prediction equal to the annotation scores as errors (a stress digit kept on one side, a
Speechocean762 ``*`` mark on the other). The rules:

- **Symbols**: the 39 CMUdict phones (ARPAbet), upper case, **without stress digits** (``IY0`` ->
  ``IY``): the paper's MDD prompt asks for "CMU Pronouncing Dictionary format (e.g., AA, IH)", and
  stress is not part of a phone's identity in MDD. ``AX`` (the schwa of the paper's own prompt
  example) is read as ``AH``, CMUdict's spelling of the same vowel (``AH0``).
- **``*`` marks** (Speechocean762: "close to this phone but not exactly", e.g. ``L*``): mapped to
  the base phone by default (``L* -> L``: the annotators heard an L, distorted); with
  ``keep_star=True`` kept as a phone of its own (``L*``), which then differs from ``L`` in PER and
  counts as a mispronunciation.
- **``<unk>``** (a phone the annotators could not recognise): kept as the token ``<unk>`` in
  targets; in PER it matches only ``<unk>`` (anything else is a substitution); in detection it is a
  mispronounced phone whose diagnosis is right only when the prediction says ``<unk>`` too. A
  symbol outside the inventory in an annotation is read by the same rule (it names no phone we can
  write), so every target is writable by the constrained decoder.
- **``<DEL>``** (a phone the speaker left out): the phone is removed from what was said.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

CMU_PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
    "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW",
    "V", "W", "Y", "Z", "ZH",
)
UNK = "<unk>"
DELETED = "<DEL>"
ALIASES = {"AX": "AH"}  # read, never written: the paper's prompt example spells the schwa AX
STAR = "*"

_PHONE = re.compile(r"([A-Za-z]{1,2})([0-2])?(\*)?")
_DELETED_SPELLINGS = {"<del>", ""}
_UNK_SPELLINGS = {"<unk>", "unk", "<unknown>"}
_KNOWN = frozenset(CMU_PHONES) | frozenset(ALIASES)


def output_phones(keep_star: bool = False) -> tuple[str, ...]:
    """Every symbol a normalised phone transcript may contain (the constrained decoder's choices)."""
    starred = tuple(p + STAR for p in CMU_PHONES) if keep_star else ()
    return CMU_PHONES + starred + (UNK,)


def is_phone_token(token: str) -> bool:
    """Whether a model may write ``token`` in a phone transcript: a CMUdict phone (or ``AX``) in any
    case, with an optional stress digit and an optional ``*``, or ``<unk>``."""
    if token.lower() == UNK:
        return True
    m = _PHONE.fullmatch(token)
    return bool(m) and m.group(1).upper() in _KNOWN


def normalise_phone(phone: str, keep_star: bool = False) -> str | None:
    """One annotated or predicted phone in the convention above; ``None`` for a deleted phone."""
    p = phone.strip()
    if p.lower() in _DELETED_SPELLINGS:
        return None
    if p.lower() in _UNK_SPELLINGS:
        return UNK
    m = _PHONE.fullmatch(p)
    if not m or m.group(1).upper() not in _KNOWN:
        return UNK
    base = m.group(1).upper()
    base = ALIASES.get(base, base)
    return base + STAR if (keep_star and m.group(3)) else base


def normalise_transcript(phones: str | Iterable[str], keep_star: bool = False) -> list[str]:
    """A phone transcript (a string split on spaces, or a list) in the convention; word-boundary
    marks (``-``, ``|``) and deleted phones drop out."""
    tokens = phones.split() if isinstance(phones, str) else list(phones)
    out = []
    for t in tokens:
        if t.strip() in ("-", "|"):
            continue
        p = normalise_phone(t, keep_star)
        if p is not None:
            out.append(p)
    return out


def heard_phones(canonical: Sequence[str], mispronunciations: Iterable, keep_star: bool = False) -> list[str | None]:
    """Per canonical phone of one word, what the annotators heard (``None``: deleted), normalised.

    ``mispronunciations`` are objects with ``index`` and ``pronounced`` (``schema.Mispronunciation``);
    an index outside the word is ignored here (the corpus readers reject it with the field's name)."""
    heard: list[str | None] = [normalise_phone(p, keep_star) for p in canonical]
    for m in mispronunciations:
        if 0 <= m.index < len(heard):
            heard[m.index] = normalise_phone(m.pronounced, keep_star)
    return heard
