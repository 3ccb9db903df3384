"""The nine tasks of the two papers: what the model is asked (instruction), what it should answer
(target, as a ``Template``), and how its answer is read back (``parse``).

Why one declaration per task: the training target, the constrained decoder's template, the parser
and the evaluation's list of aspects all come from the same ``layout``, so they cannot disagree.
``target(utt) == render(template(utt), reference_values(utt))`` byte for byte.

Tasks (SPEC §2):

- ``full`` — seed 001's comprehensive prompt (verbatim), sentence + word + phone scores;
- ``word-sentence`` — seed 001 Table 2 (no phones: private corpora can train it);
- ``word-accuracy``, ``sentence-accuracy``, ``sentence-fluency``, ``sentence-prosodic``,
  ``sentence-total`` — seed 001 Table 3 (the paper omits these prompts; ours follow the
  comprehensive prompt's wording, cut down to the asked aspect);
- ``apa`` — seed 002 appendix 7.1 rubric (verbatim), answer ``{'accuracy': 8, 'fluency': 9, ...}``;
- ``mdd`` — seed 002 appendix 7.2 (verbatim), answer ``{'word_transcript': '...',
  'phoneme_transcript': '...'}`` with the phones actually pronounced; no score template.

``apa`` and ``mdd`` start with their control token (``<|APA|>`` / ``<|MDD|>``), written directly
before the prompt with no separator (seed 002: "prepended to each prompt").

Scales: the model sees phone scores on 0-10 (SO762's 0-2 x 5, ``phone_to_model``); every score is
written as an integer (``template.format_score``: SO762 phone means are multiples of 0.2, so x5 they
are integers already; completeness 10.0 is written "10"). ``reference_values`` returns the
unrounded labels, so evaluation against it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lmm_apa.data.schema import SENTENCE_ASPECTS, WORD_ASPECTS, Utterance, phone_to_model
from lmm_apa.prompts.parsing import (
    DictAnswer,
    Layout,
    ParseResult,
    PhoneLine,
    SentenceLine,
    WordLine,
    choices_for,
    parse_layout,
    parse_mdd,
)
from lmm_apa.prompts.template import Template, render

APA_TOKEN = "<|APA|>"
MDD_TOKEN = "<|MDD|>"

# --------------------------------------------------------------------------- prompt texts
# Seed 001 section 2.1, verbatim (SPEC §2).
FULL_PROMPT = (
    "You are a pronunciation evaluation teacher who analyzes speech at sentence, word and phone levels. "
    "At the sentence level, the evaluation includes accuracy, fluency, prosody, completeness, and a total score. "
    "Accuracy reflects phone-level pronunciation, accent, and clarity; fluency considers pauses, repetitions, "
    "and stammering; prosody assesses intonation, speed, and rhythm; and completeness indicates the percentage "
    "of words from the target text that were actually pronounced correctly. The total score is a comprehensive "
    "measure that reflects all aspects of speech. At the word level, the evaluation includes accuracy, stress, "
    "and a total score. Accuracy again considers phone pronunciation, accent, and clarity, while the stress score "
    "reflects the correctness of stress placement, where a score of 10 indicates correct stress and 5 indicates "
    "incorrect stress. At phone level, we assess the goodness of each phoneme within the words. All scores range "
    "from 0 to 10, with 0 representing the poorest pronunciation and 10 representing the best, except for the "
    "word-level stress score, which is either 5 or 10.\n"
    "Please evaluate the provided audio at the sentence, word, and phone levels using the given reference text "
    "and phone sequence.\n"
    "Reference text: {text}.\n"
    "Reference phone sequence: {phones}.\n"
    "In the phone sequence, '-' indicates word boundaries. The final output format should be structured as follows:\n"
    "Sentence Scores: {{Acc}} {{Flu}} {{Pro}} {{Com}} {{Tot}}\n"
    "Word Scores: {{W1}}/{{Acc}}/{{Str}}/{{Tot}} {{W2}}/{{Acc}}/{{Str}}/{{Tot}} ...\n"
    "Phone Scores: {{P1}}/{{Acc}} {{P2}}/{{Acc}} - {{P3}}/{{Acc}} ..."
)

_SENTENCE_DEFS = {
    "accuracy": "Accuracy reflects phone-level pronunciation, accent, and clarity.",
    "fluency": "Fluency considers pauses, repetitions, and stammering.",
    "prosodic": "Prosody assesses intonation, speed, and rhythm.",
    "total": "The total score is a comprehensive measure that reflects all aspects of speech.",
}
_SENTENCE_NAMES = {"accuracy": "accuracy", "fluency": "fluency", "prosodic": "prosody", "total": "total score"}
_SENTENCE_LABELS = {"accuracy": "Sentence Accuracy", "fluency": "Sentence Fluency",
                    "prosodic": "Sentence Prosody", "total": "Sentence Total"}
_SENTENCE_SLOTS = {"accuracy": "{Acc}", "fluency": "{Flu}", "prosodic": "{Pro}", "total": "{Tot}"}

# Seed 001 Table 2 (word + sentence): the comprehensive prompt without the phone level.
WORD_SENTENCE_PROMPT = (
    "You are a pronunciation evaluation teacher who analyzes speech at sentence and word levels. "
    "At the sentence level, the evaluation includes accuracy, fluency, prosody, completeness, and a total score. "
    "Accuracy reflects phone-level pronunciation, accent, and clarity; fluency considers pauses, repetitions, "
    "and stammering; prosody assesses intonation, speed, and rhythm; and completeness indicates the percentage "
    "of words from the target text that were actually pronounced correctly. The total score is a comprehensive "
    "measure that reflects all aspects of speech. At the word level, the evaluation includes accuracy, stress, "
    "and a total score. Accuracy again considers phone pronunciation, accent, and clarity, while the stress score "
    "reflects the correctness of stress placement, where a score of 10 indicates correct stress and 5 indicates "
    "incorrect stress. All scores range from 0 to 10, with 0 representing the poorest pronunciation and 10 "
    "representing the best, except for the word-level stress score, which is either 5 or 10.\n"
    "Please evaluate the provided audio at the sentence and word levels using the given reference text.\n"
    "Reference text: {text}.\n"
    "The final output format should be structured as follows:\n"
    "Sentence Scores: {{Acc}} {{Flu}} {{Pro}} {{Com}} {{Tot}}\n"
    "Word Scores: {{W1}}/{{Acc}}/{{Str}}/{{Tot}} {{W2}}/{{Acc}}/{{Str}}/{{Tot}} ..."
)

# Seed 001 Table 3, word accuracy only.
WORD_ACCURACY_PROMPT = (
    "You are a pronunciation evaluation teacher who analyzes speech at the word level. "
    "The word-level accuracy score considers phone pronunciation, accent, and clarity. "
    "Scores range from 0 to 10, with 0 representing the poorest pronunciation and 10 representing the best.\n"
    "Please evaluate the accuracy of each word in the provided audio using the given reference text.\n"
    "Reference text: {text}.\n"
    "The final output format should be structured as follows:\n"
    "Word Scores: {{W1}}/{{Acc}} {{W2}}/{{Acc}} ..."
)


def _sentence_aspect_prompt(aspect: str) -> str:
    """Seed 001 Table 3, one sentence aspect."""
    name = _SENTENCE_NAMES[aspect]
    return (
        "You are a pronunciation evaluation teacher who analyzes speech at the sentence level. "
        f"The evaluation covers the sentence-level {name}. {_SENTENCE_DEFS[aspect]} "
        "The score ranges from 0 to 10, with 0 representing the poorest pronunciation and 10 representing the best.\n"
        f"Please evaluate the {name} of the provided audio at the sentence level using the given reference text.\n"
        "Reference text: {text}.\n"
        "The final output format should be structured as follows:\n"
        f"{_SENTENCE_LABELS[aspect]}: {{{_SENTENCE_SLOTS[aspect]}}}"
    )


# Seed 002 appendix 7.1, verbatim (the PDF's line wraps joined).
APA_PROMPT = """Rate the pronunciation of the audio.

**Accuracy**
Score range: 0 - 10
* 9-10: The overall pronunciation of the sentence is excellent, with accurate phonology and no obvious pronunciation mistakes
* 7-8: The overall pronunciation of the sentence is good, with a few pronunciation mistakes
* 5-6: The overall pronunciation of the sentence is understandable, with many pronunciation mistakes and accent, but it does not affect the understanding of basic meanings
* 3-4: Poor, clumsy and rigid pronunciation of the sentence as a whole, with serious pronunciation mistakes
* 0-2: Extremely poor pronunciation and only one or two words are recognizable

**Fluency**
Score range: 0 - 10
* 8-10: Fluent without noticeable pauses or stammering
* 6-7: Fluent in general, with a few pauses, repetition, and stammering
* 4-5: The speech is a little disfluent, with many pauses, repetition, and stammering
* 0-3: Intermittent, very disfluent speech, with lots of pauses, repetition, and stammering

**Prosodic**
Score range: 0 - 10
* 9-10: Correct intonation at a stable speaking speed, speak with cadence, and can speak like a native
* 7-8: Nearly correct intonation at a stable speaking speed, nearly smooth and coherent, but with little stammering and few pauses
* 5-6: Unstable speech speed, many stammering and pauses with a poor sense of rhythm
* 3-4: Unstable speech speed, speak too fast or too slow, without the sense of rhythm
* 0-2: Poor intonation and lots of stammering and pauses, unable to read a complete sentence

**Total**
Score range: 0 - 10
Provide an overall assessment of the pronunciation quality considering all aspects of the speech. This should reflect your holistic evaluation of the speaker's pronunciation abilities based on the entire audio sample.
* 9-10: Excellent overall pronunciation that sounds nearly native-like
* 7-8: Good pronunciation with minor issues that don't affect comprehension
* 5-6: Fair pronunciation with noticeable non-native features but generally understandable
* 3-4: Poor pronunciation that requires effort to understand
* 0-2: Very poor pronunciation that is largely incomprehensible

Provide the results in the following JSON format:
{'accuracy': ACCURACY_SCORE, 'fluency': FLUENCY_SCORE, 'prosodic': PROSODIC_SCORE, 'total': TOTAL_SCORE}"""

# Seed 002 appendix 7.2, verbatim.
MDD_PROMPT = """Transcribe the audio utterance, providing both a word-level transcript and phoneme-level breakdown.

For the phoneme breakdown, use the CMU Pronouncing Dictionary format (e.g., AA, IH).

If a word or phoneme is unclear, mark it with '<unk>'.

Provide the results in the following JSON format:
{'word_transcript': 'That's an interesting observation.', 'phoneme_transcript': 'DH EH S AX N IH N T AX R EH S T IH NG AA B Z AX R V EY IH SH AX N'}"""


# --------------------------------------------------------------------------- helpers
def reference_words(utt: Utterance) -> list[str]:
    """The words an answer is aligned to: the corpus' word list, else the text split on spaces."""
    return [w.text for w in utt.words] if utt.words else utt.text.split()


def phone_sequence(utt: Utterance) -> str:
    """``W IY0 - K AO0 L - ...`` (seed 001's reference phone sequence)."""
    missing = [w.text for w in utt.words if not w.phones]
    if not utt.words or missing:
        raise ValueError(f"utterance {utt.id}: no canonical phones for {missing or 'any word'}")
    return " - ".join(" ".join(w.phones) for w in utt.words)


def _reference_text(utt: Utterance) -> str:
    return utt.text.strip().rstrip(".")  # the prompt adds the full stop itself


def _label(utt: Utterance, level: str, aspect: str, index) -> float | None:
    """One human label on the model scale, or None when the corpus lacks it."""
    if level == "sentence":
        return None if utt.sentence is None else utt.sentence.get(aspect)
    if level == "word":
        return getattr(utt.words[index], aspect)
    if level == "phone":
        wi, pj = index
        scores = utt.words[wi].phone_scores
        return None if scores is None or pj >= len(scores) else phone_to_model(scores[pj])
    raise ValueError(f"unknown level {level!r}")


def build_template(layout: Layout, utt: Utterance) -> Template:
    """The answer template of a score layout (see ``parsing``'s line declarations)."""
    t = Template()
    for n, spec in enumerate(layout):
        if n:
            t.literal("\n")
        if isinstance(spec, SentenceLine):
            t.literal(f"{spec.label}: ")
            for k, aspect in enumerate(spec.aspects):
                if k:
                    t.literal(" ")
                t.slot(("sentence", aspect, None), choices_for("sentence", aspect))
        elif isinstance(spec, WordLine):
            t.literal(f"{spec.label}: ")
            for i, word in enumerate(reference_words(utt)):
                t.literal((" " if i else "") + word)
                for aspect in spec.aspects:
                    t.literal("/").slot(("word", aspect, i), choices_for("word", aspect))
        elif isinstance(spec, PhoneLine):
            phone_sequence(utt)  # raises ValueError naming the utterance when phones are missing
            t.literal(f"{spec.label}: ")
            for i, word in enumerate(utt.words):
                if i:
                    t.literal(" - ")
                for j, phone in enumerate(word.phones):
                    t.literal((" " if j else "") + phone + "/").slot(("phone", "accuracy", (i, j)))
        elif isinstance(spec, DictAnswer):
            t.literal("{")
            for k, aspect in enumerate(spec.aspects):
                t.literal((", " if k else "") + f"'{aspect}': ").slot(("sentence", aspect, None))
            t.literal("}")
    return t


# --------------------------------------------------------------------------- the task type
@dataclass(frozen=True)
class Task:
    """A task of SPEC §2. ``aspects`` are the (level, aspect) pairs its answer holds."""

    name: str
    control_token: str | None
    aspects: tuple[tuple[str, str], ...]
    layout: tuple = ()  # score line declarations; empty for mdd
    prompt: Callable[[Utterance], str] = lambda utt: ""
    needs_phones: bool = False  # the instruction shows the canonical phone sequence

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(level for level, _ in self.aspects))

    def instruction(self, utt: Utterance) -> str:
        """User-turn text, control token included (training and zero-shot alike)."""
        body = self.prompt(utt)
        return f"{self.control_token}{body}" if self.control_token else body

    def template(self, utt: Utterance) -> Template | None:
        if self.name == "mdd":
            return None
        return build_template(self.layout, utt)

    def slot_keys(self, utt: Utterance) -> list[tuple]:
        t = self.template(utt)
        return [] if t is None else [s.key for s in t.slots]

    def reference_values(self, utt: Utterance) -> dict[tuple, float]:
        """Human labels for every slot the corpus labels (model scale, unrounded)."""
        out = {}
        for key in self.slot_keys(utt):
            value = _label(utt, *key)
            if value is not None:
                out[key] = float(value)
        return out

    def missing_labels(self, utt: Utterance) -> list[str]:
        """Why the utterance cannot make a target ([] when it can)."""
        if self.name == "mdd":
            bad = [w.text for w in utt.words if not w.phones]
            if not utt.words or bad:
                return [f"canonical phones ({', '.join(bad) or 'no words'})"]
            return []
        try:
            keys = self.slot_keys(utt)
        except ValueError as e:
            return [str(e)]
        if not keys:
            return ["no words"]
        values = self.reference_values(utt)
        return sorted({f"{k[0]} {k[1]}" for k in keys if k not in values})

    def supports(self, utt: Utterance) -> bool:
        """Whether the utterance has every label this task's target needs (a private corpus
        without phone scores supports ``word-sentence`` but not ``full``)."""
        return not self.missing_labels(utt)

    def target(self, utt: Utterance) -> str:
        """The assistant answer for training; ValueError when labels are missing."""
        missing = self.missing_labels(utt)
        if missing:
            raise ValueError(f"utterance {utt.id}: task {self.name!r} needs {', '.join(missing)}")
        if self.name == "mdd":
            phones = " ".join(p for w in utt.words for p in w.pronounced_phones)
            return f"{{'word_transcript': '{utt.text.strip()}', 'phoneme_transcript': '{phones}'}}"
        return render(self.template(utt), self.reference_values(utt))

    def parse(self, text: str, utt: Utterance) -> ParseResult:
        """Read the model's answer back; never raises (see ``parsing``)."""
        if self.name == "mdd":
            return parse_mdd(text)
        try:
            expected = self.slot_keys(utt)
            words = reference_words(utt)
            phones = [w.phones for w in utt.words]
        except Exception as e:  # noqa: BLE001 - e.g. phones missing from the reference
            result = ParseResult()
            result.notes.append(f"reference unusable for {self.name}: {e}")
            return result
        return parse_layout(text, self.layout, expected, words, phones)


_SENTENCE_ALL = SentenceLine("Sentence Scores", SENTENCE_ASPECTS)
_WORD_ALL = WordLine("Word Scores", WORD_ASPECTS)
_APA_ASPECTS = ("accuracy", "fluency", "prosodic", "total")


def _make_tasks() -> dict[str, Task]:
    tasks = [
        Task("full", None,
             tuple(("sentence", a) for a in SENTENCE_ASPECTS) + tuple(("word", a) for a in WORD_ASPECTS)
             + (("phone", "accuracy"),),
             (_SENTENCE_ALL, _WORD_ALL, PhoneLine("Phone Scores")),
             lambda utt: FULL_PROMPT.format(text=_reference_text(utt), phones=phone_sequence(utt)),
             needs_phones=True),
        Task("word-sentence", None,
             tuple(("sentence", a) for a in SENTENCE_ASPECTS) + tuple(("word", a) for a in WORD_ASPECTS),
             (_SENTENCE_ALL, _WORD_ALL),
             lambda utt: WORD_SENTENCE_PROMPT.format(text=_reference_text(utt))),
        Task("word-accuracy", None, (("word", "accuracy"),), (WordLine("Word Scores", ("accuracy",)),),
             lambda utt: WORD_ACCURACY_PROMPT.format(text=_reference_text(utt))),
    ]
    for aspect in ("accuracy", "fluency", "prosodic", "total"):
        text = _sentence_aspect_prompt(aspect)
        tasks.append(Task(f"sentence-{aspect}", None, (("sentence", aspect),),
                          (SentenceLine(_SENTENCE_LABELS[aspect], (aspect,)),),
                          lambda utt, text=text: text.format(text=_reference_text(utt))))
    tasks.append(Task("apa", APA_TOKEN, tuple(("sentence", a) for a in _APA_ASPECTS),
                      (DictAnswer(_APA_ASPECTS),), lambda utt: APA_PROMPT))
    tasks.append(Task("mdd", MDD_TOKEN, (), (), lambda utt: MDD_PROMPT))
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _make_tasks()
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name`` (SPEC §7 task names); ValueError listing the names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}") from None
