"""Decoding benchmark: template-constrained vs free generation, batch 16 vs batch 1.

What it measures, over the same utterances (the synthetic corpus by default):
- forward passes ("decode steps", prefill included), counted by a hook on the model;
- wall time;
- for free generation, the parse rate, and whether the scores equal the constrained argmax where
  both parse;
- the constrained rows use the default look-ahead for the device and batch size
  (``lmm_apa.infer.generate.default_lookahead``, printed); "constrained b1, no look-ahead" shows
  what the speculative slots bring at batch 1;
- "free (template answer)": free greedy generation forced, token by token, to emit exactly the
  constrained answer + end of turn (``prefix_allowed_tokens_fn``). Each step is a full forward, so
  this is the cost free decoding would have on a model that answers in the template; an untrained
  tiny model never stops on its own and runs to the token budget, which flatters constrained
  decoding, so both free rows are reported.

Usage (CPU, tiny random model built on the fly):
    python benchmarks/bench_decode.py --utterances 200 --batch1-utterances 32
A tiny model trained on the synthetic corpus (free decoding then follows the template, so the
scores of both decoders can be compared):
    python benchmarks/bench_decode.py --model TINY_DIR --adapter RUN/adapter --corpus SYNTH_DIR --split test
A full-size model on a GPU:
    python benchmarks/bench_decode.py --model Qwen/Qwen2-Audio-7B-Instruct --device cuda --utterances 200
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run(backbone, task, utts, decoding: str, batch_size: int, forced_answers: dict | None = None,
        lookahead: int | None = None) -> dict:
    import torch

    from lmm_apa.infer.constrained import clear_tokenization_memos, count_forwards
    from lmm_apa.infer.generate import decode_batch, model_device, to_device
    from lmm_apa.models.logits import logits_only_at
    from lmm_apa.infer.predict import prepare
    from lmm_apa.infer.records import record

    clear_tokenization_memos()  # every run starts cold, as a fresh `lmm-apa predict` does
    recs, t0 = [], time.perf_counter()
    with count_forwards(backbone.model) as n, phase_timer(backbone) as phases:
        for i in range(0, len(utts), batch_size):
            chunk = [prepare(backbone, task, u) for u in utts[i : i + batch_size]]
            if forced_answers is None:
                decoded = decode_batch(backbone, [p.audio for p in chunk], [p.prompt for p in chunk],
                                       [p.template for p in chunk], decoding, lookahead=lookahead)
                recs += [record(p.utt, task, d) for p, d in zip(chunk, decoded)]
                continue
            # free greedy generation constrained to one known answer per row (the cost of free decoding
            # on a template-following model)
            term = backbone.tokenizer.convert_tokens_to_ids(backbone.end_of_turn)
            targets = [backbone.tokenizer(forced_answers[p.utt.id], add_special_tokens=False)["input_ids"] + [term]
                       for p in chunk]
            batch = to_device(backbone.build_batch([p.audio for p in chunk], [p.prompt for p in chunk]), model_device(backbone.model))
            start = batch["input_ids"].shape[1]

            def allowed(row, ids, targets=targets, start=start):
                k = ids.shape[0] - start
                return [targets[row][k]] if k < len(targets[row]) else [backbone.pad_token_id]

            with torch.no_grad(), logits_only_at(backbone.model, slice(-1, None)):  # as generate_free does
                backbone.model.generate(**batch, max_new_tokens=max(map(len, targets)), do_sample=False,
                                        prefix_allowed_tokens_fn=allowed, eos_token_id=backbone.eos_token_ids,
                                        pad_token_id=backbone.pad_token_id)
    seconds = time.perf_counter() - t0
    return {"records": recs, "utterances": len(utts), "forward_passes": n[0], "seconds": seconds, "features_s": phases["features"],
            "prefill_s": phases["prefill"], "after_prefill_s": seconds - phases["features"] - phases["prefill"]}


@contextmanager
def phase_timer(backbone):
    """Seconds spent in audio feature extraction + tokenization (``build_batch``) and in the prefill
    forwards (those that carry the audio); both decoders share them, so what is left is the part
    the decoding method changes."""
    import torch

    from lmm_apa.infer.generate import model_device

    phases = {"features": 0.0, "prefill": 0.0}
    build, start = backbone.build_batch, []

    def timed_build(*a, **k):
        t = time.perf_counter()
        try:
            return build(*a, **k)
        finally:
            phases["features"] += time.perf_counter() - t

    def pre(_m, _a, kwargs):
        if any(kwargs.get(k) is not None for k in ("input_features", "audio_input_features")):
            start.append(time.perf_counter())

    def post(_m, _a, kwargs, _out):
        if start:
            if model_device(backbone.model).type == "cuda":
                torch.cuda.synchronize()
            phases["prefill"] += time.perf_counter() - start.pop()

    backbone.build_batch = timed_build
    handles = [backbone.model.register_forward_pre_hook(pre, with_kwargs=True),
               backbone.model.register_forward_hook(post, with_kwargs=True)]
    try:
        yield phases
    finally:
        backbone.build_batch = build
        for h in handles:
            h.remove()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="backbone id/path (default: a tiny random Qwen2-Audio built here)")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--corpus", default=None, help="corpus to read (default: a synthetic corpus written here)")
    ap.add_argument("--split", default=None, help="split of --corpus to read (e.g. test: readings a trained model has not seen)")
    ap.add_argument("--utterances", type=int, default=200)
    ap.add_argument("--batch1-utterances", type=int, default=None, help="run batch 1 on the first N only (time)")
    ap.add_argument("--task", default="full")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the figures here too")
    ap.add_argument("--repeats", type=int, default=1, help="run every configuration N times, interleaved; keep the fastest")
    return ap.parse_args(argv)


def _model_and_utterances(args):
    """The backbone (a tiny random Qwen2-Audio when no ``--model``) and the utterances (a synthetic
    corpus when no ``--corpus``), both made in a temporary folder."""
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.models.loading import load_model

    tmp = Path(tempfile.mkdtemp(prefix="bench_decode_"))
    model = args.model
    if model is None:
        from lmm_apa.models.tiny import save_tiny_model

        model = str(save_tiny_model(tmp / "tiny-qwen2-audio", arch="qwen2-audio", seed=0))
    corpus = args.corpus
    if corpus is None:
        from lmm_apa.data.synth import write_synthetic_corpus

        corpus = tmp / "synth"
        write_synthetic_corpus(corpus, n_utterances=args.utterances, seed=0, test_fraction=0.0)
    utts = load_corpus(corpus, split=args.split).utterances[: args.utterances]
    return load_model(model, args.adapter, args.device), utts


def _best_runs(backbone, task, utts, n1: int, repeats: int) -> dict:
    """Every configuration ``repeats`` times, interleaved (the machines are shared and noisy), the
    fastest run of each kept. The forced free runs emit the first constrained b16 run's answers."""
    answers: dict = {}
    configs = {
        "constrained b16": lambda: run(backbone, task, utts, "constrained", 16),
        "free b16": lambda: run(backbone, task, utts, "free", 16),
        "free (template answer) b16": lambda: run(backbone, task, utts, "free", 16, forced_answers=answers),
        "constrained b1": lambda: run(backbone, task, utts[:n1], "constrained", 1),
        "constrained b1, no look-ahead": lambda: run(backbone, task, utts[:n1], "constrained", 1, lookahead=0),
        "free (template answer) b1": lambda: run(backbone, task, utts[:n1], "free", 1, forced_answers=answers),
    }
    rows: dict = {}
    for _ in range(repeats):
        for name, fn in configs.items():
            r = fn()
            if name == "constrained b16" and not answers:
                answers.update({x["id"]: x["output"] for x in r["records"]})
            if name not in rows or r["seconds"] < rows[name]["seconds"]:
                rows[name] = r
    return rows


def _ratios(r: dict, n1: int, n: int) -> dict:
    """Free vs constrained decoding (forward passes, wall time, time after the shared prefill) and
    batch 1 vs batch 16 per utterance."""
    def q(a, b):
        return round(a / b, 2)

    return {
        "steps free/constrained (b16)": q(r["free b16"]["forward_passes"], r["constrained b16"]["forward_passes"]),
        "time free/constrained (b16)": q(r["free b16"]["seconds"], r["constrained b16"]["seconds"]),
        "steps free-template/constrained (b16)": q(r["free (template answer) b16"]["forward_passes"], r["constrained b16"]["forward_passes"]),
        "time free-template/constrained (b16)": q(r["free (template answer) b16"]["seconds"], r["constrained b16"]["seconds"]),
        "after-prefill time free-template/constrained (b16)": q(r["free (template answer) b16"]["after_prefill_s"], r["constrained b16"]["after_prefill_s"]),
        "after-prefill time free-template/constrained (b1)": q(r["free (template answer) b1"]["after_prefill_s"], r["constrained b1"]["after_prefill_s"]),
        "time free-template/constrained (b1)": q(r["free (template answer) b1"]["seconds"], r["constrained b1"]["seconds"]),
        "time b1/b16 constrained (per utterance)": q(r["constrained b1"]["seconds"] / n1, r["constrained b16"]["seconds"] / n),
        "time b1/b16 free-template (per utterance)": q(r["free (template answer) b1"]["seconds"] / n1, r["free (template answer) b16"]["seconds"] / n),
    }


def _figures(args, backbone, task, rows: dict, n: int, n1: int) -> dict:
    """The JSON figures: per run counts and times, the look-ahead used, parse rates, whether free
    decoding's scores equal the constrained argmax where both parse, and the ratios."""
    from lmm_apa.infer.generate import default_lookahead, model_device

    cons = {r["id"]: r for r in rows["constrained b16"]["records"]}
    both = [r for r in rows["free b16"]["records"] if r["parse_ok"]]
    same = sum(r["scores"] == cons[r["id"]]["scores"] for r in both)
    device = model_device(backbone.model)
    out = {
        "model": args.model or "tiny random Qwen2-Audio (lmm_apa.models.tiny)", "task": task.name,
        "utterances": n, "batch1_utterances": n1, "repeats": args.repeats,
        "rows": {k: {"forward_passes": v["forward_passes"], "seconds": round(v["seconds"], 2),
                     **{x: round(v[x], 2) for x in ("features_s", "prefill_s", "after_prefill_s")},
                     "utterances": v["utterances"]} for k, v in rows.items()},
        "lookahead": {"b16": default_lookahead(device, 16), "b1": default_lookahead(device, 1)},
        "constrained_parse_rate": sum(r["parse_ok"] for r in rows["constrained b16"]["records"]) / n,
        "free_parse_rate": len(both) / n,
        "free_scores_equal_constrained_where_both_parse": f"{same}/{len(both)}",
    }
    out["ratios"] = _ratios(out["rows"], n1, n)
    return out


def _print_figures(out: dict) -> None:
    print(f"{'run':32} {'utts':>5} {'forward passes':>15} {'seconds':>9} {'s/utt':>7} {'features':>9} {'prefill':>8} {'after':>8}")
    for k, v in out["rows"].items():
        print(f"{k:32} {v['utterances']:>5} {v['forward_passes']:>15} {v['seconds']:>9.1f} {v['seconds'] / v['utterances']:>7.3f}"
              f" {v['features_s']:>9.1f} {v['prefill_s']:>8.1f} {v['after_prefill_s']:>8.1f}")
    print(json.dumps({k: out[k] for k in ("lookahead", "constrained_parse_rate", "free_parse_rate",
                                          "free_scores_equal_constrained_where_both_parse", "ratios")}, indent=2))


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from lmm_apa.prompts.tasks import get_task

    backbone, utts = _model_and_utterances(args)
    task = get_task(args.task)
    n1 = args.batch1_utterances or len(utts)
    run(backbone, task, utts[:2], "constrained", 2)  # warm-up (first-call costs), not timed
    run(backbone, task, utts[:2], "free", 2)
    out = _figures(args, backbone, task, _best_runs(backbone, task, utts, n1, args.repeats), len(utts), n1)
    _print_figures(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
