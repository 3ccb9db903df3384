"""Decoding cost at full size: throughput over an SO762-sized test set and single-utterance
latency, template-constrained vs free decoding, on a random-weight full-size backbone.

    python benchmarks/bench_gpu_decode.py --arch qwen2-audio --utterances 500 --batch-size 16 --steps 5
    python benchmarks/bench_gpu_decode.py --device cpu --scale 0.01 --utterances 4 --batch-size 2 --steps 1   # smoke

Goals: the 2,500-utterance SO762 test set in under 2 minutes, one utterance in under
300 ms, with the ``full`` task (sentence + word + phone scores).

What runs is our code: ``lmm_apa.infer.predict.assess_utterances`` (what ``lmm-apa predict`` runs per
batch: audio, prompt and template of each utterance, ``decode_batch``, parsing into a prediction
record) on the project's ``Backbone`` built by ``benchmarks/full_size.py``.

- Throughput: ``--utterances`` utterances with SO762's duration distribution (log-normal, median
  3.5 s, mean 4.0 s, max 20.4 s; words at SO762's 1.67 per second), in batches of
  ``--batch-size`` in corpus order (as ``predict`` does; ``--sort-by-length`` groups similar
  lengths), after one untimed warm-up batch. The 2,500-utterance figure is projected from the
  measured rate. Free decoding runs on ``--free-utterances`` of them (it is the slow path).
- Latency: one ``--seconds`` utterance, batch 1, median of ``--steps`` runs after one warm-up.

Random weights and free decoding: a random model never emits the end-of-turn token, so free
generation always runs to its budget (``max_new_tokens_for``: the template's longest rendering x 1.25
+ 8 tokens), slightly more than a trained model generates (the template's length). The figures
report the tokens generated so this can be read off. Constrained decoding's cost does not depend
on the weights (one forward per score slot).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import full_size as fs  # noqa: E402

SO762_TEST_UTTERANCES = 2500


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    fs.add_common_args(p)
    p.set_defaults(batch_size=16, steps=5)
    p.add_argument("--utterances", type=int, default=256, help="utterances timed for throughput (constrained)")
    p.add_argument("--free-utterances", type=int, default=None, help="utterances timed for free decoding (default: min(64, --utterances))")
    p.add_argument("--decodings", default="constrained,free", help="comma list of constrained, free")
    p.add_argument("--sort-by-length", action="store_true")
    p.add_argument("--task", default="full")
    p.add_argument("--lookahead", type=int, default=None,
                   help="constrained decoding's speculative slots per forward (default: lmm_apa's default for the device)")
    args = p.parse_args(argv)
    args.decodings = [d.strip() for d in args.decodings.split(",") if d.strip()]
    bad = [d for d in args.decodings if d not in ("constrained", "free")]
    if bad or not args.decodings:
        p.error(f"--decodings: use constrained and/or free, got {args.decodings}")
    if args.utterances < 1 or args.batch_size < 1 or args.steps < 1:
        p.error("--utterances, --batch-size and --steps must be >= 1")
    if args.free_utterances is None:
        args.free_utterances = min(64, args.utterances)
    return args


def run_set(backbone, task, utts, decoding: str, batch_size: int, device: str, lookahead: int | None = None) -> dict:
    """Every utterance through ``assess_utterances`` in batches; wall time, records, passes."""
    from lmm_apa.infer.constrained import count_forwards
    from lmm_apa.infer.predict import assess_utterances

    records = []
    fs.sync(device)
    t0 = time.perf_counter()
    with count_forwards(backbone.model) as passes:
        for i in range(0, len(utts), batch_size):
            records.extend(assess_utterances(backbone, task, utts[i : i + batch_size], decoding, lookahead))
    fs.sync(device)
    seconds = time.perf_counter() - t0
    errors = [r["error"] for r in records if "error" in r]
    return {
        "utterances": len(utts),
        "seconds": seconds,
        "utt_per_s": len(utts) / seconds,
        "forward_passes": passes[0],
        "parse_ok": sum(1 for r in records if r.get("parse_ok")),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "audio_seconds": float(sum(len(u.audio.array) for u in utts) / 16000),
    }


def latency(backbone, task, utt, decoding: str, repeats: int, device: str, lookahead: int | None = None) -> dict:
    from lmm_apa.infer.predict import assess_utterances

    rec = assess_utterances(backbone, task, [utt], decoding, lookahead)[0]  # warm-up
    times = []
    for _ in range(repeats):
        fs.sync(device)
        t0 = time.perf_counter()
        rec = assess_utterances(backbone, task, [utt], decoding, lookahead)[0]
        fs.sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats,
            "error": rec.get("error"), "parse_ok": bool(rec.get("parse_ok")), "output_chars": len(rec.get("output", ""))}


def _benchmark_utterances(args):
    """The throughput set (SO762's duration distribution, optionally sorted by length) and the one
    ``--seconds`` utterance timed for latency."""
    durations = fs.so762_durations(args.utterances, seed=args.seed)
    utts = fs.make_utterances(durations, seed=args.seed, words=args.words)  # --words: smoke runs only
    if args.sort_by_length:
        utts.sort(key=lambda u: len(u.audio.array))
    one = fs.make_utterances([args.seconds], seed=args.seed + 1, words=args.words)[0]
    return utts, one


def _latency_utterance(backbone, task, one, seconds: float) -> dict:
    """What the latency utterance asks of the decoders: its words, score slots, prompt and answer
    tokens, and free decoding's token budget."""
    from lmm_apa.infer.generate import max_new_tokens_for

    template = task.template(one)
    tok = backbone.tokenizer
    return {"seconds": seconds, "words": len(one.words), "slots": len(template.slots),
            "prompt_tokens_text": len(tok(backbone.prompt_text(task.instruction(one)), add_special_tokens=False)["input_ids"]),
            "answer_tokens": len(tok(task.target(one), add_special_tokens=False)["input_ids"]),
            "free_max_new_tokens": max_new_tokens_for(tok, template)}


def _measure(args, backbone, task, utts, one, device: str) -> dict:
    """Per decoding: throughput over its subset (free: the first ``--free-utterances``), after one
    untimed warm-up batch, with the projected SO762-test time, and the latency of ``one``."""
    results: dict = {}
    for decoding in args.decodings:
        subset = utts if decoding == "constrained" else utts[: args.free_utterances]
        run_set(backbone, task, subset[: args.batch_size], decoding, args.batch_size, device, args.lookahead)  # warm-up batch
        tp = run_set(backbone, task, subset, decoding, args.batch_size, device, args.lookahead)
        tp["projected_2500_s"] = SO762_TEST_UTTERANCES / tp["utt_per_s"]
        results[decoding] = {"throughput": tp, "latency": latency(backbone, task, one, decoding, args.steps, device, args.lookahead)}
    return results


def _decode_rows(args, figures: dict) -> list[tuple[str, object]]:
    """The printed table: the set-up, then per decoding throughput, projection, parse rate and latency."""
    one = figures["latency_utterance"]
    rows = [
        ("arch / task", f"{args.arch} / {args.task}" + (" (QLoRA 4-bit)" if args.qlora else "")),
        ("device", f"{figures['device_name']} ({figures['dtype']}, scale {args.scale:g})"),
        ("params", f"{figures['params_total'] / 1e9:.3f} B"),
        ("latency utterance", f"{one['seconds']:g} s, {one['words']} words, {one['slots']} score slots, "
                              f"answer {one['answer_tokens']} tokens"),
    ]
    for decoding, r in figures["results"].items():
        tp, lat = r["throughput"], r["latency"]
        rows += [
            (f"{decoding}: throughput", f"{tp['utt_per_s']:.2f} utt/s over {tp['utterances']} utt (batch {args.batch_size}), "
                                        f"{tp['forward_passes'] / max(1, tp['utterances'] / args.batch_size):.1f} passes/batch"),
            (f"{decoding}: 2,500 utterances (projected)", f"{tp['projected_2500_s']:.1f} s (goal < 120 s)"),
            (f"{decoding}: parse ok / errors", f"{tp['parse_ok']} / {tp['errors']}"),
            (f"{decoding}: latency 1 utt median", f"{lat['median_s'] * 1000:.0f} ms (goal < 300 ms)"),
        ]
    if "peak_allocated_gib" in figures:
        rows.append(("peak allocated / reserved GiB", f"{figures['peak_allocated_gib']:.2f} / {figures['peak_reserved_gib']:.2f}"))
    else:
        rows.append(("peak RSS GiB (process)", figures["peak_rss_gib"]))
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    device, dtype, workdir = fs.prepare_run(args, "lmm-apa-bench-decode-")
    import torch
    import transformers

    from lmm_apa.prompts.tasks import get_task

    t0 = time.perf_counter()
    backbone = fs.random_backbone(args, device, dtype, workdir)
    backbone.model.eval()
    build_s = time.perf_counter() - t0
    task = get_task(args.task)
    utts, one = _benchmark_utterances(args)

    fs.reset_peak(device)
    results = _measure(args, backbone, task, utts, one, device)
    figures = {
        "bench": "gpu_decode", "arch": args.arch, "task": args.task, "qlora": args.qlora, "scale": args.scale,
        "device": device, "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "dtype": dtype, "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "params_total": fs.count_params(backbone.model), "batch_size": args.batch_size,
        "sort_by_length": args.sort_by_length, "lookahead": args.lookahead if args.lookahead is not None else "default",
        "latency_utterance": _latency_utterance(backbone, task, one, args.seconds),
        "results": results, **fs.device_memory(device), "build_s": build_s,
    }
    fs.print_table("GPU decoding benchmark (random full-size weights; see benchmarks/README.md)", _decode_rows(args, figures))
    line = json.dumps(figures)
    print(line)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json_out, "a") as f:
            f.write(line + "\n")
    return figures


if __name__ == "__main__":
    main()
