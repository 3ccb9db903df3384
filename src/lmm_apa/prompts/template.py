"""An answer as a template: literal text the reference already fixes, and score slots the model fills.

Every APA answer format in the two papers is such a template: in Wang et al. 2025's
``Word Scores: WE/10/10/10 CALL/...`` the words, slashes and spaces are known from the reference
text before the model says anything; only the numbers are unknown. One representation serves three
consumers, so they cannot drift apart:

- training targets: ``render(template, values)`` gives the exact target string;
- template-constrained decoding (``lmm_apa.infer``): literal pieces are forced, each slot is decoded
  over its ``choices`` only;
- expected-score decoding: the probability of every choice at each slot gives an expectation.

``Slot.key`` names what a slot holds, a ``SlotKey``: ``SlotKey.sentence("accuracy")`` is
``("sentence", "accuracy", None)``, ``SlotKey.word("stress", 3)`` is ``("word", "stress", 3)`` (word
index 3), ``SlotKey.phone(3, 1)`` is ``("phone", "accuracy", (3, 1))`` (word 3, phone 1). A
``SlotKey`` is a tuple, so it equals (and hashes like) the plain tuple it spells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, NamedTuple, Sequence, Union

SCORE_0_10: tuple[int, ...] = tuple(range(11))
STRESS_CHOICES: tuple[int, ...] = (5, 10)


class SlotKey(NamedTuple):
    """What one score slot holds: ``level`` (sentence / word / phone), ``aspect`` and ``index``
    (None for the sentence, the word index, or ``(word, phone)`` for a phone)."""

    level: str
    aspect: str
    index: Hashable = None

    @classmethod
    def sentence(cls, aspect: str) -> "SlotKey":
        return cls("sentence", aspect, None)

    @classmethod
    def word(cls, aspect: str, index: int) -> "SlotKey":
        return cls("word", aspect, index)

    @classmethod
    def phone(cls, word: int, phone: int, aspect: str = "accuracy") -> "SlotKey":
        return cls("phone", aspect, (word, phone))

    @property
    def aspect_pair(self) -> tuple[str, str]:
        """``(level, aspect)``: the metric a slot's score counts towards."""
        return (self.level, self.aspect)


@dataclass(frozen=True)
class Slot:
    key: SlotKey
    choices: tuple[int, ...] = SCORE_0_10

    @property
    def level(self) -> str:
        return self.key[0]

    @property
    def aspect(self) -> str:
        return self.key[1]


Piece = Union[str, Slot]


@dataclass
class Template:
    pieces: list[Piece] = field(default_factory=list)

    def literal(self, text: str) -> "Template":
        if text:
            if self.pieces and isinstance(self.pieces[-1], str):
                self.pieces[-1] += text
            else:
                self.pieces.append(text)
        return self

    def slot(self, key: tuple[str, str, Hashable], choices: Sequence[int] = SCORE_0_10) -> "Template":
        self.pieces.append(Slot(SlotKey(*key), tuple(choices)))
        return self

    @property
    def slots(self) -> list[Slot]:
        return [p for p in self.pieces if isinstance(p, Slot)]


def format_score(value: float) -> str:
    """Scores are written as integers, as in the papers' targets."""
    return str(int(round(float(value))))


def render(template: Template, values: dict) -> str:
    """Fill every slot from ``values`` (keyed by ``Slot.key``); a missing key raises KeyError."""
    out = []
    for p in template.pieces:
        out.append(p if isinstance(p, str) else format_score(values[p.key]))
    return "".join(out)


def key_to_str(key: SlotKey | tuple) -> str:
    """JSON-safe name of a slot key, used in prediction lines and reports:
    ``("sentence","accuracy",None)`` -> ``"sentence.accuracy"``, ``("word","stress",3)`` ->
    ``"word.3.stress"``, ``("phone","accuracy",(3,1))`` -> ``"phone.3.1.accuracy"``."""
    level, aspect, index = key
    if index is None:
        return f"{level}.{aspect}"
    if isinstance(index, tuple):
        return ".".join([level, *map(str, index), aspect])
    return f"{level}.{index}.{aspect}"


def key_from_str(name: str) -> SlotKey:
    """Inverse of ``key_to_str``."""
    parts = name.split(".")
    level, aspect, middle = parts[0], parts[-1], parts[1:-1]
    if not middle:
        return SlotKey(level, aspect, None)
    if len(middle) == 1:
        return SlotKey(level, aspect, int(middle[0]))
    return SlotKey(level, aspect, tuple(int(m) for m in middle))
