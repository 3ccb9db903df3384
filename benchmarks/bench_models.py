"""Tiny backbones: build time, size, parameter counts, and a training step / generation on CPU.

    python benchmarks/bench_models.py

Prints one table row per arch. Figures go to benchmarks/RESULTS.md ("Models" section)."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

t0 = time.perf_counter()
import peft  # noqa: E402,F401
import transformers  # noqa: E402,F401
from transformers import Phi4MultimodalConfig, Qwen2AudioForConditionalGeneration  # noqa: E402,F401

from lmm_apa.models.adapters import apply_adapter  # noqa: E402
from lmm_apa.models.backbones import load_backbone  # noqa: E402
from lmm_apa.models.tiny import save_tiny_model  # noqa: E402

print(f"imports: {time.perf_counter() - t0:.1f} s")
torch.set_num_threads(2)
rng = np.random.default_rng(0)
AUDIOS = [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (2.5, 3.0, 3.5, 4.0, 4.5, 3.2, 2.8, 5.0)]
PROMPTS = ["<|APA|>Rate the pronunciation of the audio."] * 8
TARGETS = ["{'accuracy': 8, 'fluency': 9, 'prosodic': 7, 'total': 8}"] * 8

with tempfile.TemporaryDirectory() as tmp:
    for arch in ("qwen2-audio", "phi4-mm"):
        t = time.perf_counter()
        path = save_tiny_model(Path(tmp) / arch, arch)
        build = time.perf_counter() - t
        size = subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]
        t = time.perf_counter()
        b = load_backbone(path)
        load = time.perf_counter() - t
        params = sum(p.numel() for p in b.model.parameters())
        apply_adapter(b, "lora")
        batch = b.build_batch(AUDIOS, PROMPTS, TARGETS)
        steps = []
        for _ in range(3):
            t = time.perf_counter()
            b.model(**batch).loss.backward()
            steps.append(time.perf_counter() - t)
        b.model.eval()
        gen_batch = b.build_batch(AUDIOS, PROMPTS)
        t = time.perf_counter()
        with torch.no_grad():
            b.model.generate(**gen_batch, max_new_tokens=20, min_new_tokens=20, do_sample=False)
        gen = time.perf_counter() - t
        if arch == "qwen2-audio":
            print("| arch | parameters | on disk | build | load | LoRA train step, batch 8 | generate 20 tokens, batch 8 |")
            print("|---|---|---|---|---|---|---|")
        print(f"| {arch} | {params:,} | {size} | {build:.1f} s | {load:.2f} s | {min(steps):.2f} s | {gen:.2f} s |")
