"""Multi-process training through ``accelerate launch`` unchanged: two CPU processes (gloo) run two
real optimizer steps of the tiny model through ``train_from_config``; both ranks must have trained
in one process group and ended with identical weights (gradients all-reduced).

On a CPU-only machine accelerate 1.15 starts several processes with ``--multi_gpu`` (its torchrun
launcher; the process group falls back to gloo); ``--cpu`` would launch a single process."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

RANK_SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from transformers import TrainerCallback
    from lmm_apa.train.run import train_from_config

    class Record(TrainerCallback):
        info = {}
        def on_train_end(self, args, state, control, model=None, **kw):
            import torch.distributed as dist
            self.info["process_group_size"] = dist.get_world_size() if dist.is_initialized() else 1
            h = hashlib.sha256()
            for n, p in sorted(model.named_parameters()):
                if p.requires_grad:
                    h.update(p.detach().float().cpu().numpy().tobytes())
            self.info["trainable_sha"] = h.hexdigest()

    model, corpus, out = sys.argv[1:4]
    s = train_from_config("tiny_demo", [f"model={model}", f"data.train=[{{path: {corpus}, split: train}}]",
        f"output_dir={out}", "method=lora", "batch_size=1", "grad_accum=1", "limit=8", "max_steps=2", "logging_steps=1",
        "save_steps=100"], callbacks=[Record()])
    rank = int(os.environ.get("RANK", 0))
    (Path(out) / f"rank{rank}.json").write_text(json.dumps({**Record.info, "rank": rank,
        "global_step": s["global_step"], "final_loss": s["final_loss"]}))
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_under_accelerate_launch(tiny_qwen2_audio, tmp_path):
    from lmm_apa.data.synth import write_synthetic_corpus

    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    corpus = tmp_path / "synth"
    write_synthetic_corpus(corpus, n_utterances=10, seed=4, test_fraction=0.0)
    script = tmp_path / "rank_step.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()),
         str(script), str(tiny_qwen2_audio), str(corpus), str(out)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["process_group_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [2, 2]
    assert all(math.isfinite(r["final_loss"]) for r in ranks)
    assert ranks[0]["trainable_sha"] == ranks[1]["trainable_sha"]  # one model, gradients all-reduced
    assert (out / "adapter" / "adapter_config.json").is_file()
    log = [json.loads(l) for l in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # written once, by the main process
    assert 4.0 < log[0]["loss"] < 12.0  # ~ln(vocab) for a random tiny model: not scaled by the world size
