"""Training step time with the output head on every position vs on the answer positions only.

The trainer (``lmm_apa.train.trainer.answer_logits``) applies the LM head only where a loss reads
it: the positions that predict an answer token. This script trains the tiny Qwen2-Audio-architecture
model on the synthetic corpus for the same steps both ways (the "every position" run swaps
``answer_logits`` for a plain forward, which is what the trainer did before) and prints the wall
time and the losses, which must be identical.

    python benchmarks/bench_train_head.py [--steps 15] [--repeats 3] [--tasks full,sentence-accuracy]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per configuration; the fastest is kept")
    ap.add_argument("--tasks", default="full,sentence-accuracy")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lmm_apa.data.synth import write_synthetic_corpus
    from lmm_apa.models.tiny import save_tiny_model
    from lmm_apa.train import trainer as trainer_module
    from lmm_apa.train.run import train_from_config

    work = Path(tempfile.mkdtemp(prefix="bench_train_head_"))
    model = save_tiny_model(work / "tiny", arch="qwen2-audio", seed=0, audio_seconds=6)
    corpus = work / "synth"
    write_synthetic_corpus(corpus, n_utterances=200, seed=0, test_fraction=0.2)
    answer_only = trainer_module.answer_logits

    def every_position(model, inputs, labels, **kwargs):
        return model(**inputs, use_cache=False, **kwargs)

    best: dict = {}
    for _ in range(args.repeats):
        for task in args.tasks.split(","):
            for head, fn in (("every position", every_position), ("answer positions", answer_only)):
                trainer_module.answer_logits = fn
                t0 = time.perf_counter()
                r = train_from_config("tiny_demo", overrides=[
                    f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", "resume=false",
                    f"output_dir={work / 'run'}", f"tasks=[{task}]", f"max_steps={args.steps}", "logging_steps=5"])
                seconds = time.perf_counter() - t0
                key = (task, head)
                if key not in best or seconds < best[key][0]:
                    best[key] = (seconds, r["train_loss"])
    trainer_module.answer_logits = answer_only
    print(f"{'task':20} {'LM head on':18} {'s':>7} {'s/step':>7} {'train loss':>12}")
    for (task, head), (seconds, loss) in best.items():
        print(f"{task:20} {head:18} {seconds:7.2f} {seconds / args.steps:7.3f} {loss:12.6f}")
    for task in args.tasks.split(","):
        a, b = best[task, "every position"], best[task, "answer positions"]
        print(f"{task}: {a[0] / b[0]:.2f}x faster with the head on answer positions; losses equal: {a[1] == b[1]}")


if __name__ == "__main__":
    main()
