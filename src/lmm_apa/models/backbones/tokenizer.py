"""A checkpoint's tokenizer exactly as its ``tokenizer.json`` defines it, and a load-time check of that.

Why: a checkpoint's ``tokenizer_config.json`` names a tokenizer class, and in transformers 5 a class
with its own ``__init__`` rebuilds the pipeline, taking only vocab and merges from ``tokenizer.json``.
Phi-4-multimodal names ``GPT2Tokenizer``: loaded through that class its pre-tokenizer becomes GPT-2's
regex instead of the o200k regex in its ``tokenizer.json``, so "1000" is cut 1|000 instead of 100|0
and "IT'S" differently, which changes every prompt and answer the model sees (and template-constrained
decoding's candidates) without any error. So:

- ``load_tokenizer`` loads ``tokenizer.json`` as it is (``PreTrainedTokenizerFast``, in transformers 5
  an alias of ``TokenizersBackend``, whose plain ``from_pretrained`` keeps the file's whole pipeline),
  with the special-token settings, placeholders and chat template of ``tokenizer_config.json``;
- ``check_tokenizer`` compares a loaded tokenizer with the file's own pipeline
  (``tokenizers.Tokenizer.from_file``) on probe strings chosen where tokenizers differ (digit runs,
  contractions in capitals, accents, whitespace runs, JSON and score lines, the backbone's special
  tokens): the normalized text, the pre-tokenizer's pieces and the ids must all agree, else a clear
  error. ``load_backbone`` runs it on every load, tiny models and real checkpoints alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

TOKENIZER_FILE = "tokenizer.json"
PROBES = (
    "1000 apples, 12345 pears and 3.5 or 0.25 of 100",
    "IT'S what THEY'VE said: don't, I'm, we'll, you'd",
    "café naïve Zoë façade Ångström ½ — “quoted”",
    "Word Scores: WE/10/10/10 CALL/7/5/7 IT/0/10/0",
    "{'accuracy': 8, \"fluency\": 10, 'word_transcript': 'we call it bear'}",
    "  two  spaces\ttab\r\nnew line\n\n  indented",
    "W IY0 - K AO1 L - IH0 T <unk>",
)


def tokenizer_file(source: str | Path) -> str | None:
    """Path of the checkpoint's ``tokenizer.json`` (a local folder, or the hub cache), or None."""
    path = Path(source)
    if path.is_dir():
        candidate = path / TOKENIZER_FILE
        return str(candidate) if candidate.is_file() else None
    from transformers.utils import cached_file

    return cached_file(str(source), TOKENIZER_FILE, _raise_exceptions_for_missing_entries=False)


def load_tokenizer(source: str | Path):
    """The checkpoint's tokenizer, built from its ``tokenizer.json`` whenever it has one (whatever
    class ``tokenizer_config.json`` names); ``AutoTokenizer`` otherwise."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if tokenizer_file(source) is not None:
        return PreTrainedTokenizerFast.from_pretrained(str(source))
    return AutoTokenizer.from_pretrained(str(source))


def _pipeline(tokenizer, text: str) -> tuple:
    """(normalized text, pre-tokenizer pieces) of a ``tokenizers.Tokenizer``."""
    normalized = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer is not None else text
    pieces = tokenizer.pre_tokenizer.pre_tokenize_str(normalized) if tokenizer.pre_tokenizer is not None else None
    return normalized, [p for p, _ in pieces] if pieces is not None else None


def tokenizer_mismatches(tokenizer, reference, probes: Iterable[str]) -> list[str]:
    """What differs between ``tokenizer`` (transformers) and ``reference`` (``tokenizers.Tokenizer``)
    on ``probes``: one line per difference, empty when they agree."""
    problems = []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    for text in probes:
        if backend is not None:
            got, want = _pipeline(backend, text), _pipeline(reference, text)
            if got[0] != want[0]:
                problems.append(f"{text!r}: normalized to {got[0]!r}, tokenizer.json says {want[0]!r}")
            elif got[1] != want[1]:
                problems.append(f"{text!r}: pre-tokenized into {got[1]}, tokenizer.json says {want[1]}")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        want_ids = reference.encode(text, add_special_tokens=False).ids
        if ids != want_ids:
            problems.append(f"{text!r}: ids {ids}, tokenizer.json says {want_ids}")
    return problems


def check_tokenizer(tokenizer, source: str | Path, extra_probes: Iterable[str] = ()) -> None:
    """Raise ValueError unless ``tokenizer`` tokenizes the probe strings (and ``extra_probes``, e.g.
    the backbone's special tokens) exactly as the checkpoint's ``tokenizer.json`` does. A checkpoint
    without a ``tokenizer.json`` has nothing to compare with and passes."""
    file = tokenizer_file(source)
    if file is None:
        return
    from tokenizers import Tokenizer

    problems = tokenizer_mismatches(tokenizer, Tokenizer.from_file(file), [*PROBES, *extra_probes])
    if problems:
        raise ValueError(
            f"{source}: the loaded tokenizer ({type(tokenizer).__name__}) does not tokenize as its "
            f"{TOKENIZER_FILE} does ({len(problems)} probe(s) differ; the first: {problems[0]}). Load it "
            "from tokenizer.json (lmm_apa.models.backbones.tokenizer.load_tokenizer) instead of the class "
            "tokenizer_config.json names."
        )
