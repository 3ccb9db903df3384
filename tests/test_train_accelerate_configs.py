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
