"""Read scores back out of a model's text. Never raises: returns what it could read and says what
it could not.

Why tolerant: free generation (zero-shot above all) adds prose, drops or doubles words, truncates
at the token limit, writes "eight" or "12". The evaluation must count those failures per slot,
not lose the whole utterance, and must never shift the scores of later words onto the wrong word.
So:

- answers are read line by line, each line found by its label ("Sentence Scores:", anywhere in
  the text, any case), not by its position;
- ``WORD/a/s/t`` tokens are matched to the reference words by alignment (``align.align``), phones
  first by word group (the ``-`` separators), then globally for what is left;
- a value is *malformed* when it is not a number (kept raw in ``malformed``), *out of range* when
  it is a number outside the slot's choices (kept raw in ``out_of_range``). Neither is put in
  ``values``: a metric never sees a silently clipped score. For a slot whose choices are a full
  integer range (0-10) any real number inside the range is accepted (a model may say 8.5); for
  stress (5 or 10) only the choices themselves are;
- ``missing`` lists every expected slot that got no value at all (absent, malformed or out of
  range slots are listed in their own field, not here).

The layouts (which lines, which aspects) are declared by the tasks (``tasks.py``) with the small
line classes below; each line writes its part of the template and reads it back, so the template
and the parser of a line cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from lmm_apa.prompts.align import align, word_match_key
from lmm_apa.prompts.mdd_answer import KEYS as MDD_KEYS
from lmm_apa.prompts.mdd_answer import PHONE_KEY as MDD_PHONE_KEY
from lmm_apa.prompts.mdd_answer import WORD_KEY as MDD_WORD_KEY
from lmm_apa.prompts.mdd_answer import find_fields, is_phone_transcript, is_word_transcript, partial_fields
from lmm_apa.prompts.template import SCORE_0_10, STRESS_CHOICES, SlotKey, Template, key_to_str

Key = SlotKey


# --------------------------------------------------------------------------- layout declarations
class ScoreLine:
    """One line (or the whole dict) of a score answer. Each declaration both writes its part of
    the answer template (``write``) and reads it back from a model's text (``read``), so the
    template and the parser of a line cannot drift apart. ``words`` are the reference words,
    ``phones`` the canonical phones of each word."""

    needs_phones = False  # the line has one slot per canonical phone

    def write(self, template: Template, words: Sequence[str], phones: Sequence[Sequence[str]]) -> None:
        raise NotImplementedError

    def read(self, text: str, words: Sequence[str], phones: Sequence[Sequence[str]], result: "ParseResult") -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class SentenceLine(ScoreLine):
    """``{label}: {A} {B} ...`` — sentence aspects in the given order."""

    label: str
    aspects: tuple[str, ...]

    def write(self, template, words, phones) -> None:
        template.literal(f"{self.label}: ")
        for k, aspect in enumerate(self.aspects):
            if k:
                template.literal(" ")
            template.slot(SlotKey.sentence(aspect), choices_for("sentence", aspect))

    def read(self, text, words, phones, result) -> None:
        _parse_sentence_line(text, self, result)


@dataclass(frozen=True)
class WordLine(ScoreLine):
    """``{label}: W1/{a}/{b} W2/{a}/{b} ...`` — one token per reference word."""

    label: str
    aspects: tuple[str, ...]

    def write(self, template, words, phones) -> None:
        template.literal(f"{self.label}: ")
        for i, word in enumerate(words):
            template.literal((" " if i else "") + word)
            for aspect in self.aspects:
                template.literal("/").slot(SlotKey.word(aspect, i), choices_for("word", aspect))

    def read(self, text, words, phones, result) -> None:
        _parse_word_line(text, self, words, result)


@dataclass(frozen=True)
class PhoneLine(ScoreLine):
    """``{label}: P1/{acc} P2/{acc} - P3/{acc}`` — phones of each word, words separated by ``-``."""

    label: str
    needs_phones = True

    def write(self, template, words, phones) -> None:
        template.literal(f"{self.label}: ")
        for i, word_phones in enumerate(phones):
            if i:
                template.literal(" - ")
            for j, phone in enumerate(word_phones):
                template.literal((" " if j else "") + phone + "/").slot(SlotKey.phone(i, j))

    def read(self, text, words, phones, result) -> None:
        _parse_phone_line(text, self, phones, result)


@dataclass(frozen=True)
class DictAnswer(ScoreLine):
    """Ahn & Nam 2025's ``{'accuracy': A, 'fluency': F, ...}`` (sentence aspects only)."""

    aspects: tuple[str, ...]

    def write(self, template, words, phones) -> None:
        template.literal("{")
        for k, aspect in enumerate(self.aspects):
            template.literal((", " if k else "") + f"'{aspect}': ").slot(SlotKey.sentence(aspect))
        template.literal("}")

    def read(self, text, words, phones, result) -> None:
        _parse_dict_answer(text, self, result)


Layout = Sequence[ScoreLine]


def build_template(layout: Layout, words: Sequence[str], phones: Sequence[Sequence[str]]) -> Template:
    """The answer template of a score layout: its lines, one per text line."""
    template = Template()
    for n, line in enumerate(layout):
        if n:
            template.literal("\n")
        line.write(template, words, phones)
    return template


def choices_for(level: str, aspect: str) -> tuple[int, ...]:
    return STRESS_CHOICES if (level, aspect) == ("word", "stress") else SCORE_0_10


# --------------------------------------------------------------------------- result
@dataclass
class ParseResult:
    """What ``Task.parse`` returns. Keys are slot keys ``(level, aspect, index)``; values on the
    model scale (phones 0-10)."""

    values: dict[Key, float] = field(default_factory=dict)
    missing: list[Key] = field(default_factory=list)
    malformed: dict[Key, str] = field(default_factory=dict)  # key -> the raw text found
    out_of_range: dict[Key, float] = field(default_factory=dict)  # key -> the number found
    extra: list[str] = field(default_factory=list)  # output tokens that matched nothing
    notes: list[str] = field(default_factory=list)
    word_transcript: str | None = None  # mdd only
    phone_transcript: str | None = None  # mdd only (space-separated phones)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.malformed or self.out_of_range)

    def to_json(self) -> dict:
        """JSON-able form with ``key_to_str`` names (prediction lines, reports)."""
        out = {
            "values": {key_to_str(k): v for k, v in self.values.items()},
            "missing": [key_to_str(k) for k in self.missing],
            "malformed": {key_to_str(k): v for k, v in self.malformed.items()},
            "out_of_range": {key_to_str(k): v for k, v in self.out_of_range.items()},
            "extra": list(self.extra),
            "ok": self.ok,
        }
        if self.word_transcript is not None or self.phone_transcript is not None:
            out["word_transcript"] = self.word_transcript
            out["phone_transcript"] = self.phone_transcript
        return out


# --------------------------------------------------------------------------- values
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_STRIP = " \t\r\n,;:.!?*_`'\"()[]{}<>"


def read_value(raw: str, key: Key, result: ParseResult) -> None:
    """File one raw value text under ``values``, ``malformed`` or ``out_of_range``."""
    core = raw.strip().strip(_STRIP)  # "10.", "8," and "**9**" are numbers
    if not _NUMBER.match(core):
        result.malformed[key] = raw
        return
    value = float(core)
    choices = choices_for(key[0], key[1])
    contiguous = len(choices) == max(choices) - min(choices) + 1
    if contiguous:
        inside = min(choices) <= value <= max(choices)
    else:
        inside = any(abs(value - c) < 1e-9 for c in choices)
    if inside:
        result.values[key] = value
    else:
        result.out_of_range[key] = value


# --------------------------------------------------------------------------- lines
def _label_pattern(label: str) -> re.Pattern:
    words = label.split()
    parts = [re.escape(w) for w in words]
    if words and words[-1].lower().endswith("s"):
        parts[-1] = re.escape(words[-1][:-1]) + "s?"
    return re.compile(r"\b" + r"[\s*_`]+".join(parts) + r"\b[\s*_`]*[:：=]?[\s*_`]*(.*)$", re.IGNORECASE)


def _find_line(text: str, label: str, result: ParseResult) -> str | None:
    """The text after the first occurrence of ``label`` on its line; None when absent."""
    pattern = _label_pattern(label)
    hits = []
    for line in text.splitlines():
        m = pattern.search(line)
        if m:
            hits.append(m.group(1))
    if not hits:
        return None
    if len(hits) > 1:
        result.notes.append(f"{label!r} appears {len(hits)} times; the first was read")
    return hits[0]


def _parse_sentence_line(text: str, spec: SentenceLine, result: ParseResult) -> None:
    keys = [SlotKey.sentence(a) for a in spec.aspects]
    content = _find_line(text, spec.label, result)
    if content is None:
        result.notes.append(f"no {spec.label!r} line")
        _fallback_sentence(text, keys, result)
        return
    tokens = [t for t in re.split(r"[\s,;|]+", content) if t]
    numeric = [bool(_NUMBER.match(t.strip(_STRIP))) for t in tokens]
    if sum(numeric) >= len(keys) and tokens and not numeric[0]:
        tokens = tokens[numeric.index(True):]  # prose between the label and the numbers
    for key, token in zip(keys, tokens):
        read_value(token, key, result)
    surplus = [t for t in tokens[len(keys):] if _NUMBER.match(t.strip(_STRIP))]
    if surplus:
        result.extra.extend(surplus)
        result.notes.append(f"{spec.label!r}: {len(keys) + len(surplus)}+ numbers, {len(keys)} expected")


_ASPECT_WORDS = {
    "accuracy": r"accuracy",
    "fluency": r"fluency",
    "prosodic": r"prosod(?:ic|y)",
    "completeness": r"completeness",
    "total": r"total",
}


def _fallback_sentence(text: str, keys: list[Key], result: ParseResult) -> None:
    """No labelled line: look for "accuracy ... 8" in free prose (zero-shot answers)."""
    for key in keys:
        word = _ASPECT_WORDS.get(key[1], re.escape(key[1]))
        m = re.search(word + r"[^0-9\n]{0,25}?([+-]?\d+(?:\.\d+)?)", text, re.IGNORECASE)
        if m:
            read_value(m.group(1), key, result)
            result.notes.append(f"{key_to_str(key)} read from prose")


def _split_token(token: str) -> tuple[str, list[str]] | None:
    if "/" not in token:
        return None
    head, *values = token.split("/")
    return head, values


def _parse_word_line(text: str, spec: WordLine, words: Sequence[str], result: ParseResult) -> None:
    content = _find_line(text, spec.label, result)
    if content is None:
        result.notes.append(f"no {spec.label!r} line")
        return
    hyp: list[tuple[str, list[str]]] = []
    for token in content.split():
        split = _split_token(token)
        if split is None or not word_match_key(split[0]):
            result.extra.append(token)
        else:
            hyp.append(split)
    ref_keys = [word_match_key(w) for w in words]
    pairs = align(ref_keys, [word_match_key(h[0]) for h in hyp])
    used = {j for _, j in pairs}
    result.extra.extend("/".join([hyp[j][0], *hyp[j][1]]) for j in range(len(hyp)) if j not in used)
    for i, j in pairs:
        raw_values = hyp[j][1]
        for aspect, raw in zip(spec.aspects, raw_values):
            if raw == "":
                continue  # "WE//10": nothing there -> missing
            read_value(raw, SlotKey.word(aspect, i), result)
        if len(raw_values) > len(spec.aspects):
            result.notes.append(f"word {i} ({words[i]}): {len(raw_values)} values, {len(spec.aspects)} expected")


def _parse_phone_line(text: str, spec: PhoneLine, phones: Sequence[Sequence[str]], result: ParseResult) -> None:
    content = _find_line(text, spec.label, result)
    if content is None:
        result.notes.append(f"no {spec.label!r} line")
        return
    groups: list[list[tuple[str, str]]] = [[]]
    for token in content.split():
        if token.strip() in ("-", "|", "/", "–", "—"):
            groups.append([])
            continue
        split = _split_token(token)
        if split is None or not split[0].strip(_STRIP) or not split[1]:
            result.extra.append(token)
            continue
        groups[-1].append((split[0].strip(_STRIP).upper(), split[1][0]))
        if len(split[1]) > 1:
            result.notes.append(f"phone token {token!r} has more than one value; the first was read")
    groups = [g for g in groups if g]

    found: dict[tuple[int, int], str] = {}
    used: set[tuple[int, int]] = set()  # (group, position) of hyp tokens already paired
    ref_keys = [" ".join(p.upper() for p in word) for word in phones]
    hyp_keys = [" ".join(p for p, _ in g) for g in groups]
    for wi, gi in align(ref_keys, hyp_keys, min_ratio=0.5):
        ref_ph = [p.upper() for p in phones[wi]]
        # exact symbols only here: a near miss ("IH0" for "IY0") waits for the global pass, where
        # the phone may find its exact match in another word (a lost '-')
        for pj, hk in align(ref_ph, [p for p, _ in groups[gi]], min_ratio=1.01):
            found[(wi, pj)] = groups[gi][hk][1]
            used.add((gi, hk))
    # what is left (a lost or doubled '-', moved phones): one global pass over the leftovers
    ref_left = [(wi, pj) for wi, word in enumerate(phones) for pj in range(len(word)) if (wi, pj) not in found]
    hyp_left = [(gi, hk) for gi, g in enumerate(groups) for hk in range(len(g)) if (gi, hk) not in used]
    if ref_left and hyp_left:
        for a, b in align([phones[w][p].upper() for w, p in ref_left], [groups[g][h][0] for g, h in hyp_left]):
            found[ref_left[a]] = groups[hyp_left[b][0]][hyp_left[b][1]][1]
            used.add(hyp_left[b])
    for gi, g in enumerate(groups):
        for hk, (p, v) in enumerate(g):
            if (gi, hk) not in used:
                result.extra.append(f"{p}/{v}")
    for (wi, pj), raw in sorted(found.items()):
        read_value(raw, SlotKey.phone(wi, pj), result)


def _parse_dict_answer(text: str, spec: DictAnswer, result: ParseResult) -> None:
    for aspect in spec.aspects:
        key = SlotKey.sentence(aspect)
        word = _ASPECT_WORDS.get(aspect, re.escape(aspect))
        m = re.search(r"""['"]?\b""" + word + r"""\b['"]?\s*[:=]\s*([^,}\n]*)""", text, re.IGNORECASE)
        if m is None:
            continue
        read_value(m.group(1), key, result)


def parse_layout(text: str, layout: Layout, expected: Sequence[Key], words: Sequence[str],
                 phones: Sequence[Sequence[str]]) -> ParseResult:
    """Parse ``text`` against a task's layout. ``expected`` are the template's slot keys;
    ``words`` / ``phones`` the reference words and canonical phones they are aligned to."""
    result = ParseResult()
    if not isinstance(text, str):
        result.notes.append(f"output is {type(text).__name__}, not text")
        text = ""
    try:
        for line in layout:
            line.read(text, words, phones, result)
    except Exception as e:  # noqa: BLE001 - the contract is "never raises"; say what happened
        result.notes.append(f"parser error: {type(e).__name__}: {e}")
    expected_set = set(expected)
    for key in list(result.values):
        if key not in expected_set:  # e.g. a word index beyond the reference
            result.notes.append(f"unexpected slot {key_to_str(key)}")
            del result.values[key]
    result.missing = [k for k in expected if k not in result.values and k not in result.malformed
                      and k not in result.out_of_range]
    return result


# --------------------------------------------------------------------------- mdd
def parse_mdd(text: str) -> ParseResult:
    """Ahn & Nam 2025's ``{'word_transcript': '...', 'phoneme_transcript': '...'}``, single or double
    quotes, apostrophes inside the words ("That's"), prose around it. The answer counts only as one
    object with both keys whose values are words and phones of the inventory
    (``mdd_answer``): otherwise both transcripts stay None (nothing is scored) and the field at
    fault is ``missing`` (no such object) or ``malformed`` (with its raw value)."""
    result = ParseResult()
    if not isinstance(text, str):
        result.notes.append(f"output is {type(text).__name__}, not text")
        text = ""
    fields = find_fields(text)
    if fields is None:
        partial = partial_fields(text)
        result.missing = [SlotKey("mdd", k) for k in MDD_KEYS]
        if partial:
            result.notes.append("no answer object with both keys; found only " + ", ".join(
                f"{k}={v!r}" for k, v in partial.items()))
        return result
    checks = {MDD_WORD_KEY: is_word_transcript, MDD_PHONE_KEY: is_phone_transcript}
    for name, ok in checks.items():
        if not ok(fields[name]):
            result.malformed[SlotKey("mdd", name)] = fields[name]
    if not result.malformed:
        result.word_transcript = " ".join(fields[MDD_WORD_KEY].split())
        result.phone_transcript = " ".join(fields[MDD_PHONE_KEY].split())
    return result
