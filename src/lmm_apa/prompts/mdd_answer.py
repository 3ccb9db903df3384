"""The MDD answer of Ahn & Nam 2025 (appendix 7.2): ``{'word_transcript': '...', 'phoneme_transcript':
'...'}``: how it is written, and what counts as one.

Why one module: the training target, the parser and the grammar-constrained decoder
(``infer.mdd_grammar``) must agree on the answer's skeleton and on what may stand in each field, or
the decoder could write answers the parser refuses. A transcript counts only when both fields hold
what their names say:

- ``word_transcript``: words — ASCII letters and apostrophes (``That's``), separated by spaces;
  sentence punctuation (``. , ! ? ; : -``) is tolerated (WER ignores it) and ``<unk>`` marks an
  unclear word, as the prompt asks;
- ``phoneme_transcript``: phones of the inventory (``data.phones``: CMUdict phones, ``AX``,
  optional stress digit and ``*``, ``<unk>``) separated by spaces; ``-`` / ``|`` word separators
  are tolerated.

A field made of anything else (key names, braces, quotes, digits) is malformed, never scored.
"""

from __future__ import annotations

import re

from lmm_apa.data.phones import UNK, is_phone_token

WORD_KEY = "word_transcript"
PHONE_KEY = "phoneme_transcript"
KEYS = (WORD_KEY, PHONE_KEY)
# the skeleton around the two values, exactly as the training target writes it
OPENING = "{'" + WORD_KEY + "': '"
MIDDLE = "', '" + PHONE_KEY + "': '"
CLOSING = "'}"

WORD_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'")
SENTENCE_PUNCTUATION = frozenset(".,!?;:-")
_CURLY_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})
PHONE_SEPARATORS = ("-", "|")


def render_answer(words: str, phones: str) -> str:
    """The answer text the model is trained to write (the paper's format, single quotes)."""
    return f"{OPENING}{words}{MIDDLE}{phones}{CLOSING}"


def is_word_transcript(text: str) -> bool:
    """Words only: letters / apostrophes, spaces, sentence punctuation, ``<unk>``."""
    for token in text.translate(_CURLY_APOSTROPHES).split():
        if token.lower().strip("".join(SENTENCE_PUNCTUATION)) == UNK:
            continue
        if not all(ch in WORD_LETTERS or ch in SENTENCE_PUNCTUATION for ch in token):
            return False
    return True


def is_phone_transcript(text: str) -> bool:
    """Phones of the inventory only, separated by spaces (``-`` / ``|`` between words tolerated)."""
    return all(t in PHONE_SEPARATORS or is_phone_token(t) for t in text.split())


# --------------------------------------------------------------------------- reading the object
def _key(name: str) -> str:
    spelled = name.replace("_", "[ _]")
    return rf"""(?P<kq_{name}>['"]?){spelled}(?P=kq_{name})\s*:\s*(?P<vq_{name}>['"])(?P<{name}>.*?)(?P=vq_{name})"""


# Both fields inside one pair of braces, in either order, each value closed by its own quote. The
# lazy value runs on until the rest matches, so an apostrophe inside single quotes ("That's") is
# read as part of the value, as the training target writes it.
_OBJECT = [re.compile(r"\{\s*" + _key(a) + r"\s*,\s*" + _key(b) + r"\s*,?\s*\}", re.IGNORECASE | re.DOTALL)
           for a, b in (KEYS, KEYS[::-1])]


def find_fields(text: str) -> dict[str, str] | None:
    """``{word_transcript, phoneme_transcript}`` raw values of the first answer object in ``text``
    (prose around it allowed), or None when there is no object with both keys."""
    best = None
    for pattern in _OBJECT:
        m = pattern.search(text)
        if m and (best is None or m.start() < best.start()):
            best = m
    return None if best is None else {k: best.group(k) for k in KEYS}


def partial_fields(text: str) -> dict[str, str]:
    """Whatever field values an incomplete answer holds (for the parse notes only)."""
    out = {}
    for name in KEYS:
        m = re.search(r"""['"]?""" + name.replace("_", "[ _]") + r"""['"]?\s*:\s*['"]([^'"\n]*)""", text, re.IGNORECASE)
        if m:
            out[name] = m.group(1)
    return out
