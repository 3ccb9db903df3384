"""The shipped accelerate configs (src/lmm_apa/configs/accelerate/) load with accelerate's own config
loader, and ``accelerate launch --config_file`` turns them into the environment the HF Trainer's
Accelerator reads: DDP for LoRA, FSDP (whole-layer sharding, full state dict on save) for Unfreeze."""

from pathlib import Path

import pytest

import lmm_apa

CONFIGS = Path(lmm_apa.__file__).parent / "configs" / "accelerate"


def _launch_env(config: Path, n: int = 4) -> dict:
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(config), "--num_processes", str(n), "-m", "lmm_apa.cli", "train", "ahn2025_unfreeze"])
    args, _, _ = _validate_launch_command(args)
    return prepare_multi_gpu_env(args)


def test_every_shipped_config_loads():
    from accelerate.commands.config.config_args import load_config_from_file

    files = sorted(CONFIGS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"ddp_lora", "fsdp_unfreeze"}
    for f in files:
        cfg = load_config_from_file(str(f))
        assert cfg.num_machines == 1 and cfg.mixed_precision == "bf16", f
        assert "accelerate launch --config_file" in f.read_text(), f"{f.name}: say how to launch it"


def test_ddp_lora_launches_plain_data_parallel():
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(CONFIGS / "ddp_lora.yaml"))
    assert cfg.distributed_type.value == "MULTI_GPU" and not cfg.fsdp_config and not cfg.deepspeed_config
    env = _launch_env(CONFIGS / "ddp_lora.yaml")
    assert "ACCELERATE_USE_FSDP" not in env and env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_fsdp_unfreeze_becomes_an_fsdp_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    env = _launch_env(CONFIGS / "fsdp_unfreeze.yaml")
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # what the Trainer's Accelerator builds from that environment
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy is not None and plugin.cpu_ram_efficient_loading
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT")


def test_configs_ship_with_the_package():
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["lmm_apa"]
    assert "configs/accelerate/*.yaml" in globs


@pytest.mark.slow
def test_documented_command_trains_under_ddp_lora_config(tiny_qwen2_audio, tmp_path):
    """The command docs/multi_gpu.md gives, ``accelerate launch --config_file ddp_lora.yaml -m
    lmm_apa.cli train ...``, on two CPU processes (``--multi_gpu`` starts several without GPUs;
    gloo) and one optimizer step: both processes finish the same step, one adapter is written."""
    import json
    import os
    import shutil
    import socket
    import subprocess
    import sys

    from lmm_apa.data.synth import write_synthetic_corpus

    corpus = tmp_path / "synth"
    write_synthetic_corpus(corpus, n_utterances=8, seed=4, test_fraction=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    out = tmp_path / "run"
    cmd = [accelerate, "launch", "--config_file", str(CONFIGS / "ddp_lora.yaml"), "--multi_gpu", "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(port), "-m", "lmm_apa.cli", "train", "tiny_demo",
           "--set", f"model={tiny_qwen2_audio}", "--set", f"data.train=[{{path: {corpus}, split: train}}]",
           "--set", f"output_dir={out}", "--set", "method=lora", "--set", "batch_size=1", "--set", "grad_accum=1",
           "--set", "limit=4", "--set", "max_steps=1", "--set", "save_steps=100"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    decoder, pos, summaries = json.JSONDecoder(), 0, []
    while (start := proc.stdout.find("{", pos)) >= 0:
        obj, pos = decoder.raw_decode(proc.stdout, start)
        summaries.append(obj)
    assert [s["global_step"] for s in summaries] == [1, 1]
    assert (out / "adapter" / "adapter_config.json").is_file()
