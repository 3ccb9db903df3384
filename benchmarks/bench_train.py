"""Training throughput of the tiny backbones on CPU: random-order padded batches vs length-grouped
batches (``group_by_length``), same utterances, same steps.

Reports, per backbone and batching: non-padding tokens per second of training, the padding share of
the token positions the LLM processes, and the peak resident memory of the process (each
configuration runs in its own subprocess, so peaks do not mix).

Data: the real Speechocean762-mini recordings (80 utterances, 2-20 s; unlabelled, so the task is
``mdd``, whose target is the canonical phone sequence) when present, else a synthetic corpus.

    python benchmarks/bench_train.py [--batch-size 8] [--epochs 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speechocean762-mini"


def run_one(arch: str, model: str, corpus: str, grouped: bool, batch_size: int, epochs: float, work: str) -> dict:
    """One configuration, in this process: train and count tokens."""
    import torch

    torch.set_num_threads(2)
    from lmm_apa.train.config import load_config
    from lmm_apa.train.dataset import SkipLog, TrainDataset, build_examples, estimate_lengths
    from lmm_apa.train.run import build_trainer, load_training_corpus, prepare_backbone

    cfg = load_config("tiny_demo", [
        f"model={model}", f"data.train={corpus}", f"output_dir={work}/{arch}-{'grouped' if grouped else 'padded'}",
        "tasks=[mdd]", f"batch_size={batch_size}", "grad_accum=1", f"epochs={epochs}", "save_steps=100000",
        "logging_steps=1000", f"group_by_length={str(grouped).lower()}", "seed=0",
    ])
    skip = SkipLog(None)
    examples, _ = build_examples(load_training_corpus(cfg, skip).utterances, cfg.tasks, skip)
    backbone = prepare_backbone(cfg)
    max_seconds = backbone.max_audio_seconds
    examples = estimate_lengths(examples, backbone.tokenizer, backbone.arch, skip, max_seconds=max_seconds)
    dataset = TrainDataset(examples, backbone.sampling_rate, skip, max_seconds=max_seconds)
    trainer = build_trainer(cfg, backbone, dataset)
    counts = {"real": 0, "positions": 0, "batches": 0}
    collate = trainer.data_collator

    def counting(items):
        batch = collate(items)
        mask = batch["attention_mask"]
        counts["real"] += int(mask.sum())
        counts["positions"] += int(mask.numel())
        counts["batches"] += 1
        return batch

    trainer.data_collator = counting
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "arch": arch, "batching": "length-grouped" if grouped else "random (padded)", "examples": len(dataset),
        "skipped": skip.count, "steps": trainer.state.global_step, "seconds": round(seconds, 2),
        "tokens_per_s": round(counts["real"] / seconds, 1),
        "padding_share": round(1 - counts["real"] / counts["positions"], 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration, interleaved; the fastest is kept")
    ap.add_argument("--work", default=None, help="folder for models, corpus and runs (default: a temp dir)")
    ap.add_argument("--one", nargs=4, metavar=("ARCH", "MODEL", "CORPUS", "GROUPED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-train-"))
    if args.one:
        arch, model, corpus, grouped = args.one
        print(json.dumps(run_one(arch, model, corpus, grouped == "1", args.batch_size, args.epochs, str(work))))
        return

    from lmm_apa.models.tiny import save_tiny_model

    work.mkdir(parents=True, exist_ok=True)
    if MINI.is_dir():
        corpus = str(MINI.resolve())
    else:
        from lmm_apa.data.synth import write_synthetic_corpus

        corpus = str(work / "synth")
        if not Path(corpus).exists():
            write_synthetic_corpus(corpus, n_utterances=80, seed=0, test_fraction=0.0)
    best: dict[tuple[str, str], dict] = {}
    for arch in ("qwen2-audio", "phi4-mm"):
        model = work / f"tiny-{arch}"
        if not (model / "config.json").exists():
            save_tiny_model(model, arch=arch, seed=0)
        for _ in range(args.repeats):  # interleaved, so a burst of load on a shared machine hits both
            for grouped in ("0", "1"):
                proc = subprocess.run(
                    [sys.executable, __file__, "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                     "--work", str(work), "--one", arch, str(model), corpus, grouped],
                    capture_output=True, text=True,
                )
                if proc.returncode != 0:
                    sys.exit(proc.stderr[-3000:])
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                key = (arch, grouped)
                if key not in best or row["seconds"] < best[key]["seconds"]:
                    best[key] = row
    rows = list(best.values())
    print(f"corpus: {corpus}; batch {args.batch_size}; {args.epochs:g} epoch(s); best of {args.repeats}; "
          "CPU, torch threads 2")
    print("| backbone | batching | examples | steps | s | non-pad tokens/s | padding share | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['batching']} | {r['examples']} | {r['steps']} | {r['seconds']} | "
              f"{r['tokens_per_s']} | {r['padding_share']:.1%} | {r['peak_rss_mib']} |")
    for arch in ("qwen2-audio", "phi4-mm"):
        pad, grp = [r for r in rows if r["arch"] == arch]
        print(f"{arch}: length-grouped / padded tokens/s = {grp['tokens_per_s'] / pad['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
