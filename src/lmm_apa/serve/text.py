"""The reference text and explicit phones of a request, checked before any model work.

Why: the text decides the work (every word adds slots to decode), so it is capped in characters
and words; it arrives from a web form, so markup is removed (``<b>hello</b>`` is the word HELLO, not
B HELLO B) and accents are folded the way CMUdict spells loanwords ("café" -> CAFE); explicit
phones must be ARPAbet symbols, the only ones the prompt and the answer template know."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

from lmm_apa.serve.errors import ApiError, capped

_HIDDEN_BLOCKS = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->", re.DOTALL)
_CANONICAL_PHONE = re.compile(r"([A-Z]{1,2})[0-2]?")  # a CMUdict phone with its optional stress digit


@dataclass(frozen=True)
class TextLimits:
    """A sentence a learner reads aloud: SO762's longest has 21 words; 40 leaves room, 300
    characters bound a request's decoding work to seconds on the 7B models."""

    max_chars: int = 300
    max_words: int = 40
    max_phones_chars: int = 2000


def fold_accents(text: str) -> str:
    """"café naïve" -> "cafe naive": strip combining marks after compatibility decomposition."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def strip_markup(text: str) -> str:
    """Remove HTML: script/style blocks with their content, other tags, entities decoded."""
    return html.unescape(_TAG.sub(" ", _HIDDEN_BLOCKS.sub(" ", text)))


def clean_text(text: str, limits: TextLimits) -> str:
    """The plain, accent-folded text to assess, or an :class:`ApiError` (422, field ``text``)."""
    if len(text) > limits.max_chars:
        raise ApiError(422, "text_too_long", f"the text has {len(text)} characters; the limit is {limits.max_chars} "
                       "(one sentence at a time)", "text")
    plain = fold_accents(strip_markup(text)).strip()
    if not plain:
        raise ApiError(422, "text_empty", "text is empty: give the sentence the learner read", "text")
    foreign = sorted({c for c in plain if c.isalpha() and not c.isascii()})
    if foreign:
        raise ApiError(422, "text_not_english", "the text has letters outside the English alphabet: "
                       + capped(foreign), "text")
    from lmm_apa.data.lexicon import lexicon_words

    n_words = len(lexicon_words(plain))
    if n_words > limits.max_words:
        raise ApiError(422, "text_too_long", f"the text has {n_words} words; the limit is {limits.max_words} "
                       "(one sentence at a time)", "text")
    if n_words == 0:
        raise ApiError(422, "text_empty", "the text has no words", "text")
    return plain


def is_canonical_phone(symbol: str) -> bool:
    """An ARPAbet phone as CMUdict writes canonical pronunciations (``IY1``, ``K``), in any case;
    the inventory is ``lmm_apa.data.phones``'s, so the server and the MDD convention agree."""
    from lmm_apa.data.phones import CMU_PHONES

    m = _CANONICAL_PHONE.fullmatch(symbol.upper())
    return bool(m) and m.group(1) in CMU_PHONES


def check_phones(phones: str | None, limits: TextLimits) -> str | None:
    """Explicit phones (``"W IY1 - K AO1 L"``: words separated by " - ") with every symbol in ARPAbet,
    or an :class:`ApiError` (422, field ``phones``) naming the first few unknown ones."""
    if phones is None or not phones.strip():
        return None
    if len(phones) > limits.max_phones_chars:
        raise ApiError(422, "phones_too_long", f"phones have {len(phones)} characters; the limit is "
                       f"{limits.max_phones_chars}", "phones")
    from lmm_apa.data.lexicon import parse_explicit_phones

    groups = parse_explicit_phones(phones)
    unknown = list(dict.fromkeys(p for g in groups for p in g if not is_canonical_phone(p)))
    if unknown:
        raise ApiError(422, "phones_unknown", "phones must be ARPAbet symbols (e.g. 'W IY1 - K AO1 L'); unknown: "
                       + capped(unknown), "phones")
    if any(not g for g in groups):
        raise ApiError(422, "phones_invalid", "every word needs at least one phone (words separated by ' - ')", "phones")
    return " - ".join(" ".join(p.upper() for p in g) for g in groups)


def reference_words(text: str, phones: str | None):
    """The reference utterance (words + canonical phones) or a 422 naming a few unknown words."""
    from lmm_apa.data.lexicon import LexiconError
    from lmm_apa.infer.assess import reference_utterance

    try:
        return reference_utterance(text, phones)
    except LexiconError as e:
        raise ApiError(422, "unknown_words", "no pronunciation for " + capped(e.words)
                       + " (not in CMUdict: check the spelling or send the phones)", "text") from None
    except ValueError as e:
        field = "phones" if phones else "text"
        raise ApiError(422, "invalid", str(e)[:300], field) from None
