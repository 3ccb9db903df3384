"""Template-constrained / expected-score decoding against a generic causal LM.

The decoding core only needs a causal LM, a tokenizer and a left-padded prefill, so it is checked
here with a tiny text-only Qwen2ForCausalLM and three locally trained tokenizers that split digits as
the real backbones do: Qwen2 (digit by digit: "10" is two tokens), o200k / Phi-4 (runs of 1-3
digits: "10" is one token) and GPT-2 (" 10": a space attaches to the digits, so a boundary merges).
"""

from __future__ import annotations

import pytest
import torch

from lmm_apa.infer.constrained import (
    candidate_tree,
    constrained_decode,
    count_forwards,
    slot_candidates,
    template_segments,
)
from lmm_apa.prompts.template import STRESS_CHOICES, Template, render

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TERM = "<|im_end|>"


def _tokenizer(pattern):
    from transformers import PreTrainedTokenizerFast

    from lmm_apa.models.tiny_tokenizer import train_bpe

    tok = train_bpe(pattern, 600, ["<|endoftext|>", TERM])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=TERM, pad_token="<|endoftext|>")


@pytest.fixture(scope="session")
def toy_tokenizers():
    from lmm_apa.models.tiny_tokenizer import O200K_PRETOKENIZE_REGEX, QWEN2_PRETOKENIZE_REGEX

    return {
        "qwen2": _tokenizer(QWEN2_PRETOKENIZE_REGEX),
        "o200k": _tokenizer(O200K_PRETOKENIZE_REGEX),
        "gpt2": _tokenizer(GPT2_REGEX),
    }


def _toy_model(vocab, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.4, tie_word_embeddings=False,
    )
    cfg._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(cfg).eval()


def full_template(words, phones):
    t = Template().literal("Sentence Scores: ")
    for i, a in enumerate(["accuracy", "fluency", "prosodic", "completeness", "total"]):
        t.literal(" " if i else "").slot(("sentence", a, None))
    t.literal("\nWord Scores:")
    for i, w in enumerate(words):
        t.literal(f" {w}/").slot(("word", "accuracy", i)).literal("/").slot(("word", "stress", i), STRESS_CHOICES)
        t.literal("/").slot(("word", "total", i))
    t.literal("\nPhone Scores:")
    for i, ps in enumerate(phones):
        if i:
            t.literal(" -")
        for j, p in enumerate(ps):
            t.literal(f" {p}/").slot(("phone", "accuracy", (i, j)))
    return t


def apa_template():
    t = Template().literal("{'accuracy': ").slot(("sentence", "accuracy", None))
    for a in ("fluency", "prosodic", "total"):
        t.literal(f", '{a}': ").slot(("sentence", a, None))
    return t.literal("}")


def _prefill(tok, prompts):
    tok.padding_side = "left"
    return dict(tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False))


def _brute_force_probs(model, tok, prompt, text_before, choices, text_after, term_id):
    """Each choice scored on its own: the whole answer so far + the value + the boundary token, a
    fresh forward with no cache (one row per choice), no shared computation with the decoder."""
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    seqs = []
    for c in choices:
        ids = tok(text_before + str(c) + text_after, add_special_tokens=False)["input_ids"]
        if text_after == "":
            ids = ids + [term_id]
            cut = len(ids)
        else:
            end = len(text_before) + len(str(c))
            cut = next(k for k in range(1, len(ids) + 1) if len(tok.decode(ids[:k])) > end)
        seqs.append(ids[:cut])
    width = len(p_ids) + max(map(len, seqs))  # right padding: each row is its own sequence
    x = torch.tensor([p_ids + s + [0] * (width - len(p_ids) - len(s)) for s in seqs])
    am = torch.tensor([[1] * (len(p_ids) + len(s)) + [0] * (width - len(p_ids) - len(s)) for s in seqs])
    lp = torch.log_softmax(model(input_ids=x, attention_mask=am).logits.float(), -1)
    logps = [sum(lp[r, len(p_ids) + i - 1, t].item() for i, t in enumerate(s)) for r, s in enumerate(seqs)]
    logps = torch.tensor(logps, dtype=torch.float64)
    return torch.softmax(logps, 0).tolist()


def test_segments_refuse_adjacent_slots():
    t = Template().literal("a ").slot(("sentence", "accuracy", None)).slot(("sentence", "total", None))
    with pytest.raises(ValueError, match="adjacent"):
        template_segments(t)
    segs, trailing = template_segments(apa_template())
    assert [s.key[1] for _, s in segs] == ["accuracy", "fluency", "prosodic", "total"] and trailing == "}"


def test_slot_candidates_multi_token_ten(toy_tokenizers):
    tq = toy_tokenizers["qwen2"]
    c = slot_candidates(tq, [], "WE/", range(11), "/", None)
    ten = c.seqs[10]
    assert [tq.decode([t]) for t in ten] == ["1", "0", "/"]  # Qwen2: "10" is two tokens + boundary
    assert [tq.decode([t]) for t in c.seqs[1]] == ["1", "/"]
    nodes, preds = candidate_tree(c.seqs)
    assert len(nodes) == 11  # "0".."9" and "1"->"0"
    to = toy_tokenizers["o200k"]
    c = slot_candidates(to, [], "WE/", range(11), "/", None)
    assert [to.decode([t]) for t in c.seqs[10]] == ["10", "/"]  # o200k: one token
    # GPT-2 regex: " 10" is one pre-token, so the space is not forced but belongs to the choice
    tg = toy_tokenizers["gpt2"]
    c = slot_candidates(tg, [], "Sentence Scores:" + " ", range(11), " ", None)
    assert all(tg.decode(s[:1]).startswith(" ") for s in c.seqs)
    assert tg.decode(c.committed_after) == "Sentence Scores:"


@pytest.mark.parametrize("tok_name,lookahead", [("qwen2", 0), ("o200k", 0), ("gpt2", 0), ("qwen2", 3), ("gpt2", 2)])
def test_constrained_matches_brute_force_and_rendered_ids(toy_tokenizers, tok_name, lookahead):
    tok = toy_tokenizers[tok_name]
    model = _toy_model(len(tok))
    term = tok.convert_tokens_to_ids(TERM)
    prompts = ["Rate this: WE CALL IT BEAR.\n", "Score it.\n"]
    templates = [full_template(["WE", "CALL"], [["W", "IY0"], ["K", "AO0", "L"]]), apa_template()]
    with count_forwards(model) as n:
        results = constrained_decode(model, tok, _prefill(tok, prompts), templates, term, pad_id=tok.pad_token_id,
                                     lookahead=lookahead)
    n_slots = max(len(t.slots) for t in templates)
    if lookahead == 0:
        assert n[0] == 1 + n_slots  # one prefill, then exactly one forward per slot
    else:
        assert n[0] <= 1 + n_slots  # look-ahead never adds forwards (and the results below are unchanged)
    for prompt, t, res in zip(prompts, templates, results):
        # 1. output is the template rendered with the argmax values, and its token ids are the
        #    tokenizer's own ids for that text (what training used)
        assert res.text == render(t, res.values)
        assert res.token_ids == tok(render(t, res.values), add_special_tokens=False)["input_ids"]
        # 2. every slot's distribution equals the brute-force one and sums to 1
        segs, trailing = template_segments(t)
        before = ""
        for k, (lit, slot) in enumerate(segs):
            after = segs[k + 1][0] if k + 1 < len(segs) else trailing
            probs = res.probs[slot.key]
            ref = _brute_force_probs(model, tok, prompt, before + lit, slot.choices, after, term)
            assert sum(probs) == pytest.approx(1.0, abs=1e-6)
            assert probs == pytest.approx(ref, abs=1e-5), (tok_name, slot.key)
            assert res.values[slot.key] == slot.choices[max(range(len(ref)), key=ref.__getitem__)]
            assert res.expected[slot.key] == pytest.approx(sum(p * c for p, c in zip(ref, slot.choices)), abs=1e-4)
            before = before + lit + str(res.values[slot.key])
    # the distributions are not degenerate (the test could fail)
    assert any(max(p) < 0.99 for p in results[0].probs.values())


@pytest.mark.parametrize("lookahead", [0, 2])
def test_batch_invariance(toy_tokenizers, lookahead):
    tok = toy_tokenizers["qwen2"]
    model = _toy_model(len(tok), seed=1)
    term = tok.convert_tokens_to_ids(TERM)
    prompts = ["A.\n", "A much longer prompt with more words in it.\n", "Mid length prompt.\n", "B\n"]
    templates = [
        full_template(["WE"], [["W", "IY0"]]),
        apa_template(),
        full_template(["IT", "BEAR", "NOW"], [["IH0", "T"], ["B", "EH0", "R"], ["N", "AW1"]]),
        apa_template(),
    ]
    batched = constrained_decode(model, tok, _prefill(tok, prompts), templates, term, pad_id=tok.pad_token_id,
                                 lookahead=lookahead)
    for i in range(4):
        single = constrained_decode(model, tok, _prefill(tok, [prompts[i]]), [templates[i]], term,
                                    pad_id=tok.pad_token_id)[0]
        assert single.values == batched[i].values
        for key in single.probs:
            assert single.probs[key] == pytest.approx(batched[i].probs[key], abs=1e-5)


def _memorise(model, tok, text: str, term: int, steps: int) -> None:
    """Overfit the toy model on one prompt + answer (seconds), so its greedy output is that answer."""
    x = torch.tensor([tok(text, add_special_tokens=False)["input_ids"] + [term]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_constrained_equals_greedy_when_free_follows_template(toy_tokenizers):
    """A model that follows the template: bias it so greedy generation produces a template answer;
    the constrained argmax must reproduce the same text exactly."""
    tok = toy_tokenizers["qwen2"]
    model = _toy_model(len(tok), seed=2)
    term = tok.convert_tokens_to_ids(TERM)
    prompt = "Score it.\n"
    t = apa_template()
    target = "{'accuracy': 7, 'fluency': 10, 'prosodic': 3, 'total': 1}"
    _memorise(model, tok, prompt + target, term, steps=30)
    p = _prefill(tok, [prompt])
    gen = model.generate(**p, max_new_tokens=40, do_sample=False, eos_token_id=term, pad_token_id=tok.pad_token_id)
    free = tok.decode(gen[0, p["input_ids"].shape[1]:], skip_special_tokens=True)
    assert free == target
    res = constrained_decode(model, tok, p, [t], term, pad_id=tok.pad_token_id)[0]
    assert res.text == free
    assert res.values[("sentence", "fluency", None)] == 10


@pytest.mark.parametrize("tok_name", ["qwen2", "o200k", "gpt2"])
def test_fast_path_tokenization_equals_the_tokenizer(toy_tokenizers, tok_name):
    """The decoder calls the Rust backend directly: same ids and offsets as the tokenizer's own call."""
    from lmm_apa.infer.constrained import _tokenize

    tok = toy_tokenizers[tok_name]
    tok.padding_side = "left"
    tok(["a", "a longer text"], padding=True)  # leaves padding switched on in the wrapper's backend
    texts = ["Sentence Scores: 10 7", " WE/10/5/9 CALL/", "{'accuracy': 3, 'fluency': 10}<|im_end|>", ""]
    ids, offsets = _tokenize(tok, texts)
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == enc["input_ids"] and offsets == [[tuple(o) for o in row] for row in enc["offset_mapping"]]
    assert any(len(i) > 3 for i in ids)


@pytest.mark.parametrize("tok_name", ["qwen2", "o200k", "gpt2"])
def test_windowed_tokenization_equals_whole_text(toy_tokenizers, tok_name):
    """Re-tokenizing only the last few committed tokens' text gives exactly what tokenizing the
    whole answer gives, slot after slot, for a long answer."""
    tok = toy_tokenizers[tok_name]
    t = full_template(["WE", "CALL", "IT", "BEAR"], [["W", "IY0"], ["K", "AO0", "L"], ["IH0", "T"], ["B", "EH0", "R"]])
    segs, trailing = template_segments(t)
    text, committed, starts = "", [], []
    for k, (lit, slot) in enumerate(segs):
        after = segs[k + 1][0] if k + 1 < len(segs) else trailing
        whole = slot_candidates(tok, committed, text + lit, slot.choices, after, 1)
        windowed = slot_candidates(tok, committed, text + lit, slot.choices, after, 1, committed_starts=starts, window=3)
        assert (windowed.feed, windowed.seqs, windowed.committed_after) == (whole.feed, whole.seqs, whole.committed_after)
        committed, starts = windowed.committed_after, windowed.starts_after
        assert len(starts) == len(committed)
        text = text + lit + str(slot.choices[k % len(slot.choices)])


def test_lookahead_takes_fewer_forwards_and_changes_nothing(toy_tokenizers):
    """Scores in streaks (as in SO762: most phones and words are 10): a model that has memorised such
    an answer makes the look-ahead guesses right, so several slots are decided per forward; the
    values and every distribution equal one-slot-per-forward decoding, wrong guesses included
    (the sentence 8s follow nothing, the phone 4 breaks a streak of 10s)."""
    tok = toy_tokenizers["qwen2"]
    model = _toy_model(len(tok), seed=3)
    term = tok.convert_tokens_to_ids(TERM)
    prompt = "Rate this: WE CALL IT.\n"
    t = full_template(["WE", "CALL", "IT"], [["W", "IY0"], ["K", "AO0", "L"], ["IH0", "T"]])
    values = {s.key: 10 for s in t.slots}
    values.update({("sentence", a, None): 8 for a in ("accuracy", "fluency", "prosodic", "completeness", "total")})
    values[("phone", "accuracy", (1, 1))] = 4
    _memorise(model, tok, prompt + render(t, values), term, steps=40)
    runs = {}
    for lookahead in (0, 3):
        with count_forwards(model) as n:
            res = constrained_decode(model, tok, _prefill(tok, [prompt]), [t], term, pad_id=tok.pad_token_id,
                                     lookahead=lookahead)[0]
        runs[lookahead] = (res, n[0])
    (base, n0), (ahead, n3) = runs[0], runs[3]
    assert base.values == values  # the model learnt the answer (else the test says nothing)
    assert ahead.values == base.values and ahead.text == base.text
    for key, probs in base.probs.items():
        assert ahead.probs[key] == pytest.approx(probs, abs=1e-5)
    assert n0 == 1 + len(t.slots)
    print(f"\nforwards: {n0} one slot at a time, {n3} with look-ahead 3")
    assert n3 <= 1 + len(t.slots) // 2  # at least two slots per forward on average


def test_default_lookahead_fills_the_token_budget():
    from lmm_apa.infer.generate import default_lookahead

    assert default_lookahead("cpu", 1) == 2 and default_lookahead("cpu", 16) == 0
    assert [default_lookahead("cuda", b) for b in (1, 4, 8, 16)] == [4, 3, 1, 0]
