"""Training step time: what the trainer's forward skips, measured.

The trainer (``lmm_apa.train.trainer.answer_logits``) (1) applies the LM head only where a loss reads
it, the positions that predict an answer token, (2) runs a right-padded batch without its attention
mask (plain causal attention: a real token never sees the padding to its right), and (3) runs the
language model's last decoder layer at those answer positions only, its keys and values everywhere
(``lmm_apa.models.last_layer``). This script trains a tiny model on the synthetic corpus for the
same steps four ways and prints wall time (model loading and the trainer's start included, the same
for all: the ratios understate the per-step gain) and training loss (no change alters what is
computed at an answer position, so the losses agree to float rounding, ~1e-6):

- ``every position, mask``: a plain ``model(**batch)`` (what the trainer did first);
- ``answer positions, mask``: the head on answer positions only, the padding mask kept;
- ``answer positions, no mask``: (1) + (2), every layer whole;
- ``+ last layer trimmed``: (1) + (2) + (3), what the trainer does now.

    python benchmarks/bench_train_head.py [--steps 15] [--repeats 3] [--tasks full,sentence-accuracy]
        [--arch qwen2-audio] [--threads 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def variants(trainer_module) -> dict:
    """{name: the ``answer_logits`` function that variant trains with}."""
    now = trainer_module.answer_logits

    def every_position(model, inputs, labels, **kwargs):
        return model(**inputs, use_cache=False, **kwargs)

    def answer_positions_with_mask(model, inputs, labels, **kwargs):
        with trainer_module.logits_only_at(model, trainer_module.answer_positions(labels)):
            return model(**inputs, use_cache=False, **kwargs)

    def answer_positions_whole_layers(model, inputs, labels, **kwargs):
        with trainer_module.logits_only_at(model, trainer_module.answer_positions(labels)):
            return model(**trainer_module.without_right_padding_mask(inputs), use_cache=False, **kwargs)

    return {"every position, mask": every_position, "answer positions, mask": answer_positions_with_mask,
            "answer positions, no mask": answer_positions_whole_layers, "+ last layer trimmed": now}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per configuration; the fastest is kept")
    ap.add_argument("--tasks", default="full,sentence-accuracy")
    ap.add_argument("--arch", default="qwen2-audio", choices=["qwen2-audio", "phi4-mm"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra training-config override (key=value)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lmm_apa.data.synth import write_synthetic_corpus
    from lmm_apa.models.tiny import save_tiny_model
    from lmm_apa.train import trainer as trainer_module
    from lmm_apa.train.run import train_from_config

    work = Path(tempfile.mkdtemp(prefix="bench_train_head_"))
    model = save_tiny_model(work / "tiny", arch=args.arch, seed=0, audio_seconds=6)
    corpus = work / "synth"
    write_synthetic_corpus(corpus, n_utterances=200, seed=0, test_fraction=0.2)
    ways, now = variants(trainer_module), trainer_module.answer_logits
    best: dict = {}
    for _ in range(args.repeats):
        for task in args.tasks.split(","):
            for way, fn in ways.items():
                trainer_module.answer_logits = fn
                t0 = time.perf_counter()
                r = train_from_config("tiny_demo", overrides=[
                    f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", "resume=false",
                    f"output_dir={work / 'run'}", f"tasks=[{task}]", f"max_steps={args.steps}", "logging_steps=5",
                    *args.set])
                seconds = time.perf_counter() - t0
                if (task, way) not in best or seconds < best[task, way][0]:
                    best[task, way] = (seconds, r["train_loss"])
    trainer_module.answer_logits = now
    print(f"{args.arch}, {args.steps} steps, torch threads {args.threads}")
    print(f"{'task':20} {'forward':28} {'s':>7} {'s/step':>7} {'train loss':>12}")
    for (task, way), (seconds, loss) in best.items():
        print(f"{task:20} {way:28} {seconds:7.2f} {seconds / args.steps:7.3f} {loss:12.6f}")
    for task in args.tasks.split(","):
        first, masked, plain, now_ = (best[task, way] for way in ways)
        print(f"{task}: now {first[0] / now_[0]:.2f}x the first trainer's speed, {masked[0] / now_[0]:.2f}x the masked "
              f"one's, {plain[0] / now_[0]:.2f}x the whole-layer one's; losses {first[1]:.6f} / {masked[1]:.6f} / "
              f"{plain[1]:.6f} / {now_[1]:.6f}")


if __name__ == "__main__":
    main()
