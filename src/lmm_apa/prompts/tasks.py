"""The nine tasks of the two papers: what the model is asked (instruction), what it should answer
(target, as a ``Template``), and how its answer is read back (``parse``).

Why one object per task: the training target, the constrained decoder's template, the parser, the
decodings it supports and the evaluation's metric sections all come from the task's object (a
``ScoreTask`` answered with scores laid out by its ``layout``, or the ``TranscriptTask`` of mdd), so
they cannot disagree and no caller tests a task's name.
``target(utt) == render(template(utt), reference_values(utt))`` byte for byte.

Tasks:

- ``full`` — Wang et al. 2025's comprehensive prompt (verbatim), sentence + word + phone scores;
- ``word-sentence`` — Wang et al. 2025 Table 2 (no phones: private corpora can train it);
- ``word-accuracy``, ``sentence-accuracy``, ``sentence-fluency``, ``sentence-prosodic``,
  ``sentence-total`` — Wang et al. 2025 Table 3 (the paper omits these prompts; ours follow the
  comprehensive prompt's wording, cut down to the asked aspect);
- ``apa`` — Ahn & Nam 2025 appendix 7.1 rubric (verbatim), answer ``{'accuracy': 8, 'fluency': 9, ...}``;
- ``mdd`` — Ahn & Nam 2025 appendix 7.2 (verbatim), answer ``{'word_transcript': '...',
  'phoneme_transcript': '...'}`` with the phones actually pronounced; no score template.

``apa`` and ``mdd`` start with their control token (``<|APA|>`` / ``<|MDD|>``), written directly
before the prompt with no separator (Ahn & Nam 2025: "prepended to each prompt").

Scales: the model sees phone scores on 0-10 (SO762's 0-2 x 5, ``phone_to_model``); every score is
written as an integer (``template.format_score``: SO762 phone means are multiples of 0.2, so x5 they
are integers already; completeness 10.0 is written "10"). ``reference_values`` returns the
unrounded labels, so evaluation against it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ClassVar

from lmm_apa.data.schema import SENTENCE_ASPECTS, WORD_ASPECTS, Audio, Utterance, Word, phone_to_model
from lmm_apa.prompts.mdd_answer import render_answer
from lmm_apa.prompts.parsing import (
    DictAnswer,
    ParseResult,
    PhoneLine,
    ScoreLine,
    SentenceLine,
    WordLine,
    build_template,
    parse_layout,
    parse_mdd,
)
from lmm_apa.prompts.template import SlotKey, Template, key_to_str, render

APA_TOKEN = "<|APA|>"
MDD_TOKEN = "<|MDD|>"

# --------------------------------------------------------------------------- prompt texts
# Wang et al. 2025 section 2.1, verbatim.
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

# Wang et al. 2025 Table 2 (word + sentence): the comprehensive prompt without the phone level.
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

# Wang et al. 2025 Table 3, word accuracy only.
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
    """Wang et al. 2025 Table 3, one sentence aspect."""
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


# Ahn & Nam 2025 appendix 7.1, verbatim (the PDF's line wraps joined).
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

# Ahn & Nam 2025 appendix 7.2, verbatim.
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
    """``W IY0 - K AO0 L - ...`` (Wang et al. 2025's reference phone sequence)."""
    missing = [w.text for w in utt.words if not w.phones]
    if not utt.words or missing:
        raise ValueError(f"utterance {utt.id}: no canonical phones for {missing or 'any word'}")
    return " - ".join(" ".join(w.phones) for w in utt.words)


def _reference_text(utt: Utterance) -> str:
    return utt.text.strip().rstrip(".")  # the prompt adds the full stop itself


def _label(utt: Utterance, key: SlotKey) -> float | None:
    """One human label on the model scale, or None when the corpus lacks it."""
    if key.level == "sentence":
        return None if utt.sentence is None else utt.sentence.get(key.aspect)
    if key.level == "word":
        return getattr(utt.words[key.index], key.aspect)
    if key.level == "phone":
        wi, pj = key.index
        scores = utt.words[wi].phone_scores
        return None if scores is None or pj >= len(scores) else phone_to_model(scores[pj])
    raise ValueError(f"unknown level {key.level!r}")


# --------------------------------------------------------------------------- the task types
@dataclass(frozen=True)
class Task:
    """What every task has: a name, a control token, an instruction, an answer it can be trained
    on (``target``) and read back from (``parse``), the decodings it supports and the metric
    sections ``evaluate`` reports for it. Callers ask the task instead of testing its name."""

    name: str
    control_token: str | None
    prompt: Callable[[Utterance], str]

    # the decodings ``predict`` / ``assess`` / ``serve`` may use for this task
    decodings: ClassVar[tuple[str, ...]] = ("free",)
    aspects: tuple[tuple[str, str], ...] = ()  # (level, aspect) pairs the answer scores

    def instruction(self, utt: Utterance) -> str:
        """User-turn text, control token included (training and zero-shot alike)."""
        body = self.prompt(utt)
        return f"{self.control_token}{body}" if self.control_token else body

    def decoding_for(self, requested: str) -> str:
        """The decoding used when ``requested`` is asked for: that one, or a ValueError naming the
        task's decodings (a requested mode is never switched silently)."""
        if requested not in self.decodings:
            raise ValueError(f"task {self.name!r} cannot be decoded {requested!r}; its decodings: {', '.join(self.decodings)}")
        return requested

    @property
    def metric_sections(self) -> tuple[str, ...]:
        """The sections of ``metrics.json`` this task's lines feed."""
        raise NotImplementedError

    def template(self, utt: Utterance) -> Template | None:
        """The score template the constrained decoder follows (None: no score slots)."""
        return None

    def slot_keys(self, utt: Utterance) -> list[SlotKey]:
        t = self.template(utt)
        return [] if t is None else [s.key for s in t.slots]

    def reference_values(self, utt: Utterance) -> dict[SlotKey, float]:
        """Human labels for every slot the corpus labels (model scale, unrounded)."""
        return {}

    def missing_labels(self, utt: Utterance) -> list[str]:
        """Why the utterance cannot make a target ([] when it can)."""
        raise NotImplementedError

    def supports(self, utt: Utterance) -> bool:
        """Whether the utterance has every label this task's target needs (a private corpus
        without phone scores supports ``word-sentence`` but not ``full``)."""
        return not self.missing_labels(utt)

    def target(self, utt: Utterance) -> str:
        """The assistant answer for training; ValueError when labels are missing."""
        missing = self.missing_labels(utt)
        if missing:
            raise ValueError(f"utterance {utt.id}: task {self.name!r} needs {', '.join(missing)}")
        return self._answer(utt)

    def _answer(self, utt: Utterance) -> str:
        raise NotImplementedError

    def parse(self, text: str, utt: Utterance) -> ParseResult:
        """Read the model's answer back; never raises (see ``parsing``)."""
        raise NotImplementedError

    def answer_fields(self, parsed: ParseResult) -> dict:
        """What a prediction line holds of a parsed answer."""
        raise NotImplementedError


@dataclass(frozen=True)
class ScoreTask(Task):
    """A task answered with scores laid out by ``layout`` (score line declarations); its answer is
    a template, so it also supports template-constrained decoding."""

    decodings: ClassVar[tuple[str, ...]] = ("free", "constrained")
    layout: tuple[ScoreLine, ...] = ()
    needs_phones: bool = False  # the instruction shows the canonical phone sequence

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(level for level, _ in self.aspects))

    @property
    def metric_sections(self) -> tuple[str, ...]:
        return self.levels

    def template(self, utt: Utterance) -> Template:
        if any(line.needs_phones for line in self.layout):
            phone_sequence(utt)  # raises ValueError naming the utterance when phones are missing
        return build_template(self.layout, reference_words(utt), [w.phones for w in utt.words])

    def reference_values(self, utt: Utterance) -> dict[SlotKey, float]:
        out = {}
        for key in self.slot_keys(utt):
            value = _label(utt, key)
            if value is not None:
                out[key] = float(value)
        return out

    def missing_labels(self, utt: Utterance) -> list[str]:
        try:
            keys = self.slot_keys(utt)
        except ValueError as e:
            return [str(e)]
        if not keys:
            return ["no words"]
        values = self.reference_values(utt)
        return sorted({f"{k.level} {k.aspect}" for k in keys if k not in values})

    def _answer(self, utt: Utterance) -> str:
        return render(self.template(utt), self.reference_values(utt))

    def parse(self, text: str, utt: Utterance) -> ParseResult:
        try:
            expected = self.slot_keys(utt)
            words = reference_words(utt)
            phones = [w.phones for w in utt.words]
        except Exception as e:  # noqa: BLE001 - e.g. phones missing from the reference
            result = ParseResult()
            result.notes.append(f"reference unusable for {self.name}: {e}")
            return result
        return parse_layout(text, self.layout, expected, words, phones)

    def answer_fields(self, parsed: ParseResult) -> dict:
        return {"scores": {key_to_str(k): v for k, v in parsed.values.items()}}


@dataclass(frozen=True)
class TranscriptTask(Task):
    """Mispronunciation detection (Ahn & Nam 2025): the answer transcribes the words and the phones
    actually said, in the MDD phone convention (``data.phones``); no score template, evaluated in
    the ``mdd`` section. ``constrained`` decoding follows the answer's grammar
    (``infer.mdd_grammar``, registered in ``lmm_apa.infer.predict.CONSTRAINED_DECODERS``).
    ``keep_star``: keep Speechocean762's ``*`` phones (``L*``) in the target and the grammar
    instead of their base phone."""

    decodings: ClassVar[tuple[str, ...]] = ("free", "constrained")
    keep_star: bool = False

    @property
    def metric_sections(self) -> tuple[str, ...]:
        return ("mdd",)

    def missing_labels(self, utt: Utterance) -> list[str]:
        bad = [w.text for w in utt.words if not w.phones]
        if not utt.words or bad:
            return [f"canonical phones ({', '.join(bad) or 'no words'})"]
        return []

    def _answer(self, utt: Utterance) -> str:
        phones = " ".join(p for w in utt.words for p in w.said_phones(self.keep_star))
        return render_answer(utt.text.strip(), phones)

    def parse(self, text: str, utt: Utterance) -> ParseResult:
        return parse_mdd(text)

    def answer_fields(self, parsed: ParseResult) -> dict:
        return {"word_transcript": parsed.word_transcript, "phone_transcript": parsed.phone_transcript}


_SENTENCE_ALL = SentenceLine("Sentence Scores", SENTENCE_ASPECTS)
_WORD_ALL = WordLine("Word Scores", WORD_ASPECTS)
_APA_ASPECTS = ("accuracy", "fluency", "prosodic", "total")


def _aspects(level: str, names) -> tuple[tuple[str, str], ...]:
    return tuple((level, a) for a in names)


def _make_tasks() -> dict[str, Task]:
    both_levels = _aspects("sentence", SENTENCE_ASPECTS) + _aspects("word", WORD_ASPECTS)
    tasks: list[Task] = [
        ScoreTask("full", None,
                  lambda utt: FULL_PROMPT.format(text=_reference_text(utt), phones=phone_sequence(utt)),
                  aspects=both_levels + (("phone", "accuracy"),),
                  layout=(_SENTENCE_ALL, _WORD_ALL, PhoneLine("Phone Scores")), needs_phones=True),
        ScoreTask("word-sentence", None, lambda utt: WORD_SENTENCE_PROMPT.format(text=_reference_text(utt)),
                  aspects=both_levels, layout=(_SENTENCE_ALL, _WORD_ALL)),
        ScoreTask("word-accuracy", None, lambda utt: WORD_ACCURACY_PROMPT.format(text=_reference_text(utt)),
                  aspects=(("word", "accuracy"),), layout=(WordLine("Word Scores", ("accuracy",)),)),
    ]
    for aspect in ("accuracy", "fluency", "prosodic", "total"):
        text = _sentence_aspect_prompt(aspect)
        tasks.append(ScoreTask(f"sentence-{aspect}", None, lambda utt, text=text: text.format(text=_reference_text(utt)),
                               aspects=(("sentence", aspect),),
                               layout=(SentenceLine(_SENTENCE_LABELS[aspect], (aspect,)),)))
    tasks.append(ScoreTask("apa", APA_TOKEN, lambda utt: APA_PROMPT, aspects=_aspects("sentence", _APA_ASPECTS),
                           layout=(DictAnswer(_APA_ASPECTS),)))
    tasks.append(TranscriptTask("mdd", MDD_TOKEN, lambda utt: MDD_PROMPT))
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _make_tasks()
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def prompt_texts() -> tuple[str, ...]:
    """Every task's instruction as the model reads it (control tokens included), for a short sample
    reading. Why: the tiny models' tokenizers are trained on these words, so a tiny model's prompt is
    cut into about as many tokens as the real vocabularies cut it into."""
    words = [Word("WE", ["W", "IY0"]), Word("CALL", ["K", "AO0", "L"]), Word("IT", ["IH0", "T"]),
             Word("BEAR", ["B", "EH0", "R"])]
    sample = Utterance(id="sample", text="WE CALL IT BEAR", words=words, audio=Audio())
    return tuple(task.instruction(sample) for task in TASKS.values())


def get_task(name: str, keep_star: bool = False) -> Task:
    """The task called ``name`` (the command line's task names); ValueError listing the names otherwise.
    ``keep_star``: a transcript task (mdd) keeps Speechocean762's ``*`` phones instead of their base
    phone (``TranscriptTask.keep_star``); score tasks have no phones to transcribe and are unchanged."""
    try:
        task = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}") from None
    if keep_star and isinstance(task, TranscriptTask):
        task = replace(task, keep_star=True)
    return task
