"""Training cost at full size: peak memory, step time, tokens/s and model-FLOPs utilisation
of the project's own training step on a random-weight full-size backbone.

    python benchmarks/bench_gpu_train.py --arch qwen2-audio --seconds 4,20 --gradient-checkpointing both [--qlora]
    python benchmarks/bench_gpu_train.py --arch phi4-mm --method unfreeze --seconds 4,20
    python benchmarks/bench_gpu_train.py --device cpu --scale 0.01 --steps 3      # smoke run, seconds

Every (checkpointing, seconds) combination runs in one process on one built model (the build, and
for QLoRA the save + quantized load, is paid once); each prints its own table and JSON line.

What runs is our code: the backbone is built by ``benchmarks/full_size.py`` and wrapped in the
project's ``Backbone``; ``apply_adapter`` puts LoRA (r=8 on every LM linear for Qwen2-Audio, rank 320
on the speech-LoRA modules for Phi-4) or Unfreeze on it; examples are ``full``-task prompts and
targets from ``build_examples``; the trainer is ``build_trainer`` (``APATrainer``, AdamW, bf16, batch
``--batch-size``, no gradient accumulation so every optimizer step is timed). QLoRA writes the random
model to ``--workdir`` and loads it back through ``load_backbone(..., quantization="4bit")``.

Figures (printed as one table, then one JSON line):
- step time: wall time between consecutive optimizer steps (data collation included: that is what
  a user's run pays), median over the timed steps after ``--warmup`` untimed ones;
- tokens/s: language-model positions (prompt + audio + answer, padding excluded) per second;
- peak memory: ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` over the timed
  training (weights included), reset after the build and the FLOP count;
- model FLOPs per step: COUNTED, not estimated: one forward + backward of the first batch under
  ``torch.utils.flop_counter.FlopCounterMode`` with gradient checkpointing off (so recomputation is
  not counted: MFU, not HFU). Autograd skips weight gradients of frozen weights, so with LoRA this
  is ~ 2N (forward) + 2N (activation gradients) per LM token, not 6N; a frozen audio encoder whose
  input needs no gradient is forward-only (2N per encoder frame; Qwen2-Audio's encoder always
  runs its whole 30 s / 1,500-frame window); Unfreeze adds the encoder's backward. Attention
  matmuls are included. MFU = counted FLOPs per step / median step time / ``--peak-tflops``
  (default 989 = H100 SXM dense bf16; the H200 has the same compute; a dense 8k bf16 matmul reached
  ~790-800 on the H200 these figures were measured on). An analytic cross-check
  (2N per token per matmul direction, attention left out) is printed beside it. Caveat: it counts
  the output head on every LM position, while the trainer now runs the head on the answer positions
  only (``answer_logits``), so it over-counts by up to the head's share (Qwen2-Audio-7B: 0.64 B of
  8.4 B parameters); on CPU the flop counter also misses SDPA and counts the audio convolutions,
  which the estimate leaves out. MFU uses the counted figure.
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

H100_BF16_DENSE_TFLOPS = 989.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    fs.add_common_args(p, sweep=True)
    p.add_argument("--method", choices=("lora", "unfreeze"), default="lora")
    p.add_argument(
        "--lora-r", type=int, default=None, help="default: 8 (qwen2-audio, Wang et al. 2025), 320 (phi4-mm speech LoRA)"
    )
    p.add_argument("--lora-alpha", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    p.add_argument("--no-flop-count", action="store_true", help="skip the counted forward+backward")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        p.error("--steps and --batch-size must be >= 1, --warmup >= 0")
    return args


def _set_checkpointing(model, on: bool) -> None:
    """Activation checkpointing on or off, through transformers' current names where it has them
    (``gradient_checkpointing_*`` are deprecated from 5.24 on) and the old ones before."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if on:
        enable = getattr(inner, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        disable = getattr(inner, "activation_checkpointing_disable", None) or inner.gradient_checkpointing_disable
        disable()


def counted_flops(trainer, model, batch, gradient_checkpointing: bool) -> float:
    """FLOPs of one forward + backward of ``batch`` through the trainer's own loss (see module doc)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if gradient_checkpointing:
        _set_checkpointing(model, False)
    try:
        model.train()
        with FlopCounterMode(display=False) as counter:
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(model, batch)
            loss.backward()
        model.zero_grad(set_to_none=True)
    finally:
        if gradient_checkpointing:
            _set_checkpointing(model, True)
    del loss
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return float(counter.get_total_flops())


def analytic_flops(backbone, method: str, lm_tokens: int, audio_frames: int) -> float:
    """2N per token per matmul direction: forward 2N, activation gradients 2N (LM, always: LoRA sits
    in every layer), weight gradients 2N only where the weights train; audio path forward-only unless
    Unfreeze. Attention score/value matmuls left out."""
    import torch

    model = backbone.model
    lm, audio = 0, 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or "lora_" in name or "vision" in name or "image" in name:
            continue
        n = mod.in_features * mod.out_features
        if any(k in name for k in ("audio_tower", "multi_modal_projector", "audio_embed")):
            audio += n
        else:
            lm += n
    lm_mult = 4 + (2 if method == "full" else 0)
    audio_mult = 2 + (4 if method == "unfreeze" else 0)
    return float(lm_mult * lm * lm_tokens + audio_mult * audio * audio_frames)


def build(args, device: str, dtype: str, workdir: Path):
    """The backbone with its adapter applied (once per process)."""
    from lmm_apa.models.adapters import apply_adapter

    t0 = time.perf_counter()
    backbone = fs.random_backbone(args, device, dtype, workdir)
    build_s = time.perf_counter() - t0
    params_total = fs.count_params(backbone.model)
    lora = dict(fs.DEFAULT_LORA[args.arch])
    r = args.lora_r or lora["r"]
    alpha = args.lora_alpha or (lora["alpha"] if args.lora_r is None else 2 * r)
    apply_adapter(backbone, method=args.method, r=r, alpha=alpha, dropout=0.05,
                  gradient_checkpointing=args.gradient_checkpointing != "off", quantized=args.qlora)
    info = {"build_s": build_s, "params_total": params_total,
            "params_trainable": fs.count_params(backbone.model, trainable_only=True), "lora_r": r, "lora_alpha": alpha}
    return backbone, info


def _benchmark_dataset(args, backbone, seconds: float, n_steps: int):
    """``full``-task training examples of ``seconds``-long synthetic utterances, enough for
    ``n_steps`` batches; every utterance must make an example (else the figures would lie)."""
    from lmm_apa.train.dataset import SkipLog, TrainDataset, build_examples, estimate_lengths

    utts = fs.make_utterances([seconds] * (n_steps * args.batch_size), seed=args.seed, words=args.words)
    skip = SkipLog(None)
    examples, counts = build_examples(utts, ["full"], skip)
    examples = estimate_lengths(examples, backbone.tokenizer, backbone.arch, skip,
                                max_seconds=backbone.max_audio_seconds)
    if len(examples) != len(utts):
        raise SystemExit(f"only {len(examples)} of {len(utts)} benchmark utterances made examples: {counts}")
    return TrainDataset(examples, backbone.sampling_rate, skip, max_seconds=backbone.max_audio_seconds)


class StepClock:
    """What the timed run records: the time at each optimizer step's end (after a device sync, so
    the step's kernels are done) and the LM tokens of each collated batch. ``callback()`` is the
    trainer callback, ``collator(backbone)`` the SFT collator that counts."""

    def __init__(self, device: str, warmup: int):
        self.device, self.warmup = device, warmup
        self.step_ends: list[float] = []
        self.seen_tokens: list[int] = []

    def callback(self):
        from transformers import TrainerCallback

        clock = self

        class StepTimer(TrainerCallback):
            def on_train_begin(self, a, state, control, **kw):
                fs.sync(clock.device)
                clock.step_ends.append(time.perf_counter())

            def on_step_end(self, a, state, control, **kw):
                fs.sync(clock.device)
                clock.step_ends.append(time.perf_counter())
                if state.global_step == clock.warmup:
                    fs.reset_peak(clock.device)  # the timed steps' peak (weights stay counted: they are allocated)
                control.should_save = False  # timing only: no checkpoint
                return control

        return StepTimer()

    def collator(self, backbone):
        from lmm_apa.train.collator import SFTCollator

        seen = self.seen_tokens

        class CountingCollator(SFTCollator):
            def __call__(self, items):
                batch = super().__call__(items)
                seen.append(int(batch["attention_mask"].sum()))
                return batch

        return CountingCollator(backbone)

    def timed(self) -> tuple[list[float], list[int]]:
        """Step intervals after the warm-up, and the tokens of those steps."""
        intervals = [b - a for a, b in zip(self.step_ends, self.step_ends[1:])]
        timed = intervals[self.warmup:] or intervals
        tokens = self.seen_tokens[self.warmup : self.warmup + len(timed)] or self.seen_tokens
        return timed, tokens


def _train_config(args, backbone, info: dict, workdir: Path, device: str, dtype: str, checkpointing: bool, n_steps: int):
    """The project's training config for the timed run: no gradient accumulation (every optimizer
    step is timed), a loss logged each step, no checkpoints."""
    from lmm_apa.train.config import TrainConfig

    return TrainConfig(
        model=backbone.source, arch=args.arch, method="qlora" if args.qlora else args.method,
        lora={"r": info["lora_r"], "alpha": info["lora_alpha"], "dropout": 0.05}, tasks=["full"],
        data={"train": ["<in memory>"]}, batch_size=args.batch_size, grad_accum=1, max_steps=n_steps, lr=1e-4,
        warmup_ratio=0.0, logging_steps=1, save_steps=10**9, save_total_limit=None,
        output_dir=str(workdir / "run"), gradient_checkpointing=checkpointing, group_by_length=False,
        bf16=dtype == "bf16", device=device, seed=args.seed, resume=False,
    )


def _batch_sizes(args, backbone, first: dict) -> dict:
    """Token counts of the first batch: LM positions, audio tokens, answer tokens, and the audio
    encoder's frames (Qwen2-Audio's encoder always runs its 30 s / 1,500-frame window)."""
    from lmm_apa.models.backbones import IGNORE_INDEX

    audio_id = backbone.tokenizer.convert_tokens_to_ids(backbone.audio_token)
    audio_tokens = int((first["input_ids"] == audio_id).sum())
    return {"lm_tokens": int(first["attention_mask"].sum()), "audio_tokens": audio_tokens,
            "answer_tokens": int((first["labels"] != IGNORE_INDEX).sum()),
            "audio_frames": 1500 * args.batch_size if args.arch == "qwen2-audio" else audio_tokens}


def _model_flops(args, trainer, backbone, first: dict, sizes: dict, device: str, checkpointing: bool):
    """``(counted, analytic)`` FLOPs of one step (counted is None with ``--no-flop-count``)."""
    counted = None
    if not args.no_flop_count:
        batch = {k: v.to(device) for k, v in first.items()}
        counted = counted_flops(trainer, backbone.model, batch, checkpointing)
        del batch
    return counted, analytic_flops(backbone, args.method, sizes["lm_tokens"], sizes["audio_frames"])


def _train_figures(args, info: dict, device: str, dtype: str, seconds: float, checkpointing: bool, sizes: dict,
                   timed: list[float], tokens: list[int], flops, analytic: float, mem: dict, losses: list, train_s: float) -> dict:
    """The JSON figures of one timed run (see the module doc for what each means)."""
    import torch
    import transformers

    step_s = statistics.median(timed)
    mfu = flops / step_s / (args.peak_tflops * 1e12) if flops else None
    return {
        "bench": "gpu_train", "arch": args.arch, "method": args.method, "qlora": args.qlora,
        "gradient_checkpointing": checkpointing, "lora_r": info["lora_r"], "scale": args.scale, "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu", "dtype": dtype,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "params_total": info["params_total"], "params_trainable": info["params_trainable"],
        "seconds_audio": seconds, "batch_size": args.batch_size,
        "lm_tokens_per_step": sizes["lm_tokens"], "audio_tokens_per_step": sizes["audio_tokens"],
        "answer_tokens_per_step": sizes["answer_tokens"],
        "steps_timed": len(timed), "step_s_median": step_s, "step_s_mean": statistics.fmean(timed),
        "tokens_per_s": sum(tokens) / sum(timed), **mem,
        "model_tflop_per_step_counted": flops / 1e12 if flops else None,
        "model_tflop_per_step_analytic": analytic / 1e12,
        "achieved_tflops": flops / step_s / 1e12 if flops else None,
        "peak_tflops": args.peak_tflops, "mfu": mfu, "losses": losses,
        "build_s": info["build_s"], "train_s": train_s,
    }


def _train_rows(args, f: dict) -> list[tuple[str, object]]:
    """The printed table of one run's figures."""
    rows = [
        ("arch / method", f"{args.arch} / {'qlora' if args.qlora else args.method} r={f['lora_r']}"
                          + (" + grad ckpt" if f["gradient_checkpointing"] else "")),
        ("device", f"{f['device_name']} ({f['dtype']}, scale {args.scale:g})"),
        ("params total / trainable", f"{f['params_total'] / 1e9:.3f} B / {f['params_trainable'] / 1e6:.1f} M"),
        ("audio s / LM tokens (audio, answer)", f"{f['seconds_audio']:g} s / {f['lm_tokens_per_step']} "
                                                f"({f['audio_tokens_per_step']}, {f['answer_tokens_per_step']})"),
        ("step time median (mean) s", f"{f['step_s_median']:.3f} ({f['step_s_mean']:.3f}) over {f['steps_timed']} steps"),
        ("tokens/s", f["tokens_per_s"]),
    ]
    if "peak_allocated_gib" in f:
        rows.append(("peak allocated / reserved GiB", f"{f['peak_allocated_gib']:.2f} / {f['peak_reserved_gib']:.2f}"))
    else:
        rows.append(("peak RSS GiB (process)", f["peak_rss_gib"]))
    counted = f["model_tflop_per_step_counted"]
    losses = f["losses"]
    rows += [
        ("model TFLOP/step counted (analytic)", f"{counted if counted else float('nan'):.3f} ({f['model_tflop_per_step_analytic']:.3f})"),
        ("MFU vs peak", f"{f['mfu']:.1%} of {args.peak_tflops:g} TFLOP/s" if f["mfu"] is not None else "not counted"),
        ("loss first -> last", f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "none logged"),
    ]
    return rows


def _emit(figures: dict, json_out: str | None) -> None:
    """One JSON line on stdout, appended to ``--json-out`` when given."""
    line = json.dumps(figures)
    print(line, flush=True)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        with open(json_out, "a") as f:
            f.write(line + "\n")


def _release(trainer, device: str) -> None:
    """Drop the optimizer states before the next run's peak is measured."""
    import gc

    import torch

    trainer.accelerator.free_memory()
    trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_one(args, backbone, info: dict, device: str, dtype: str, workdir: Path, seconds: float, checkpointing: bool) -> dict:
    """``--warmup`` + ``--steps`` optimizer steps of the project's trainer on ``seconds``-long
    ``full``-task examples; the figures of the timed steps."""
    from lmm_apa.train.collator import SFTCollator
    from lmm_apa.train.run import build_trainer

    _set_checkpointing(backbone.model, checkpointing)
    n_steps = args.warmup + args.steps
    dataset = _benchmark_dataset(args, backbone, seconds, n_steps)
    clock = StepClock(device, args.warmup)
    trainer = build_trainer(_train_config(args, backbone, info, workdir, device, dtype, checkpointing, n_steps),
                            backbone, dataset, callbacks=[clock.callback()])
    trainer.data_collator = clock.collator(backbone)

    first = SFTCollator(backbone)([dataset[i] for i in range(args.batch_size)])
    sizes = _batch_sizes(args, backbone, first)
    flops, analytic = _model_flops(args, trainer, backbone, first, sizes, device, checkpointing)
    del first
    fs.reset_peak(device)

    t_train = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t_train
    timed, tokens = clock.timed()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    figures = _train_figures(args, info, device, dtype, seconds, checkpointing, sizes, timed, tokens, flops, analytic,
                             fs.device_memory(device), losses, train_s)
    fs.print_table("GPU training benchmark (random full-size weights; see benchmarks/README.md)", _train_rows(args, figures))
    _emit(figures, args.json_out)
    _release(trainer, device)
    return figures


def main(argv=None) -> list[dict]:
    """Every (checkpointing, seconds) combination on one built backbone; a list of figures."""
    args = parse_args(argv)
    device, dtype, workdir = fs.prepare_run(args, "lmm-apa-bench-train-")
    backbone, info = build(args, device, dtype, workdir)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.gradient_checkpointing]
    out = []
    for checkpointing in modes:
        for seconds in args.seconds:
            out.append(run_one(args, backbone, info, device, dtype, workdir, seconds, checkpointing))
    return out


if __name__ == "__main__":
    main()
