"""End-to-end training runs of the tiny backbones through ``train_from_config`` (the ``lmm-apa train``
path): outputs, resume after a crash or SIGTERM with no step lost, bad audio, preference objectives."""

import json
import math
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lmm_apa.train.run import train_from_config
from lmm_apa.train.trainer import find_resume_checkpoint
from train_utils import train_overrides as _overrides
from train_utils import write_small_synth

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    return write_small_synth(tmp_path_factory, "train-synth", seed=3)


def _lora_weights(adapter_dir):
    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def _log(out):
    return [json.loads(l) for l in (Path(out) / "loss_log.jsonl").read_text().splitlines() if l.strip()]


class CrashAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


class SigtermAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:  # delivered while step `self.step` runs
            os.kill(os.getpid(), signal.SIGTERM)


def test_sft_run_writes_a_loadable_adapter_log_and_summary(tiny_qwen2_audio, small_synth, tmp_path):
    out = tmp_path / "run"
    summary = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "max_steps=2"))
    assert summary["global_step"] == 2 and not summary["interrupted"]
    assert summary["examples"] == 8 and summary["tasks"] == ["sentence-accuracy"]
    assert math.isfinite(summary["final_loss"])
    adapter = Path(summary["adapter"])
    info = json.loads((adapter / "lmm_apa_adapter.json").read_text())
    assert info["arch"] == "qwen2-audio" and info["method"] == "lora" and info["tasks"] == ["sentence-accuracy"]
    assert Path(info["base"]) == Path(tiny_qwen2_audio).resolve()
    assert (adapter / "adapter_config.json").is_file() and (adapter / "tokenizer_config.json").is_file()
    log = _log(out)
    assert [r["step"] for r in log] == [1, 2]
    assert all({"loss", "lr", "epoch"} <= set(r) for r in log)
    assert (out / "loss.png").stat().st_size > 1000
    assert json.loads((out / "train_summary.json").read_text())["global_step"] == 2
    # LoRA B starts at zero: a trained adapter has moved it, and load_adapter puts it back on a fresh model
    weights = _lora_weights(adapter)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    from lmm_apa.models.adapters import load_adapter
    from lmm_apa.models.backbones import load_backbone

    backbone = load_adapter(load_backbone(info["base"], device="cpu"), adapter)
    loaded = {n: p for n, p in backbone.model.named_parameters() if "lora_B" in n}
    assert loaded and any(p.abs().sum() > 0 for p in loaded.values())


@pytest.mark.slow
def test_resume_after_a_crash_loses_no_step_and_ends_where_an_unbroken_run_ends(tiny_qwen2_audio, small_synth, tmp_path):
    # 6 examples / batch 2 = 3 steps per epoch: the resume at step 2 starts mid-epoch (skipping
    # batches already seen) and step 4 crosses into epoch 1; checkpoints every 2.
    common = ["max_steps=4", "limit=6"]
    whole = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "whole", *common))
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, broken, *common), callbacks=[CrashAt(3)])
    assert find_resume_checkpoint(broken).endswith("checkpoint-2")
    # a checkpoint killed while being written, in the staging area and in place: both ignored
    (broken / ".checkpoint-tmp" / "checkpoint-4").mkdir(parents=True)
    (broken / ".checkpoint-tmp" / "checkpoint-4" / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    (broken / "checkpoint-4").mkdir()
    (broken / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "log_hi')
    assert find_resume_checkpoint(broken).endswith("checkpoint-2")
    shutil.rmtree(broken / "checkpoint-4")  # (an in-place leftover would be overwritten by the save at step 4)

    resumed = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, broken, *common))
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert resumed["global_step"] == 4
    assert [r["step"] for r in _log(broken)] == [1, 2, 3, 4]
    whole_log = {r["step"]: r["loss"] for r in _log(tmp_path / "whole")}
    for r in _log(broken):
        assert r["loss"] == pytest.approx(whole_log[r["step"]], rel=1e-4, abs=1e-5)
    a, b = _lora_weights(whole["adapter"]), _lora_weights(resumed["adapter"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert not (broken / ".checkpoint-tmp").exists()


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_rerun_finishes(tiny_qwen2_audio, small_synth, tmp_path):
    out = tmp_path / "run"
    first = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "max_steps=3", "save_steps=100"),
                              callbacks=[SigtermAt(2)])
    assert first["interrupted"] and first["global_step"] == 2 and first["adapter"] is None
    assert find_resume_checkpoint(out).endswith("checkpoint-2")  # saved at the signal, not at save_steps
    second = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "max_steps=3", "save_steps=100"))
    assert second["resumed_from"].endswith("checkpoint-2") and second["global_step"] == 3
    assert [r["step"] for r in _log(out)] == [1, 2, 3]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_bad_recordings_are_recorded_and_training_goes_on(tiny_qwen2_audio, small_synth, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(small_synth, corpus)
    wavs = sorted((corpus / "WAVE").rglob("*.WAV"))
    train_ids = [line.split()[0] for line in (corpus / "train" / "wav.scp").read_text().splitlines()[:8]]
    by_id = {w.stem: w for w in wavs}
    broken, silent = by_id[train_ids[0]], by_id[train_ids[1]]
    broken.write_bytes(b"RIFF not really a wav")  # header check fails up front
    sf.write(str(silent), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")  # fails when loaded
    out = tmp_path / "run"
    summary = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, corpus, out, "max_steps=2", "batch_size=1"))
    assert summary["global_step"] == 2
    skipped = [json.loads(l) for l in (out / "skipped.jsonl").read_text().splitlines()]
    reasons = {r["id"]: r["reason"] for r in skipped}
    assert broken.stem in reasons and str(broken) in reasons[broken.stem]
    assert silent.stem in reasons and "silent" in reasons[silent.stem]
    assert summary["skipped"] >= 2


@pytest.mark.slow
def test_simpo_and_dpo_runs_log_their_parts(tiny_qwen2_audio, small_synth, tmp_path):
    simpo = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "simpo",
                                                      "objective=simpo", "max_steps=1"))
    rows = _log(tmp_path / "simpo")
    assert simpo["global_step"] == 1 and {"simpo", "ce", "margin", "reward_accuracy"} <= set(rows[0])
    # eq. 3 with lambda 0.1: loss = simpo + 0.1 * ce at every logged step (one batch per step)
    for r in rows:
        assert r["loss"] == pytest.approx(r["simpo"] + 0.1 * r["ce"], rel=1e-4)
    dpo = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "dpo",
                                                    "objective=dpo", "max_steps=2"))
    rows = _log(tmp_path / "dpo")
    assert dpo["global_step"] == 2
    # LoRA B starts at zero, so at step 1 the policy IS the adapter-disabled reference: loss = log 2
    assert rows[0]["dpo"] == pytest.approx(math.log(2), abs=1e-5) and rows[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["margin"] != 0.0


def test_phi4_apa_and_mdd_train_together(tiny_phi4_mm, small_synth, tmp_path):
    out = tmp_path / "run"
    summary = train_from_config("ahn2025_lora", _overrides(tiny_phi4_mm, small_synth, out, "max_steps=2", "bf16=false",
                                                           "gradient_checkpointing=false", "device=cpu"))
    assert summary["tasks"] == ["apa", "mdd"] and summary["examples"] == 16  # 8 utterances x 2 tasks
    assert summary["global_step"] == 2 and math.isfinite(summary["final_loss"])
    info = json.loads((Path(summary["adapter"]) / "lmm_apa_adapter.json").read_text())
    assert info["arch"] == "phi4-mm" and info["tasks"] == ["apa", "mdd"]


def test_qlora_without_a_gpu_is_a_clear_error(tiny_qwen2_audio, small_synth, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: QLoRA can run here")
    with pytest.raises(ValueError, match="QLoRA needs a CUDA GPU"):
        train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "q", "method=qlora"))


def test_a_corpus_without_the_needed_labels_is_a_clear_error(tiny_qwen2_audio, tmp_path):
    mini = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speechocean762-mini"
    if not mini.is_dir():
        pytest.skip("speechocean762-mini not present")
    with pytest.raises(ValueError, match="no trainable examples.*lack the labels"):
        train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, mini.resolve(), tmp_path / "x"))


def test_cli_train_runs_a_config_with_overrides_and_reports_bad_keys(tiny_qwen2_audio, small_synth, tmp_path):
    from typer.testing import CliRunner

    from lmm_apa.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["train", "tiny_demo"]
    for o in _overrides(tiny_qwen2_audio, small_synth, out, "max_steps=1"):
        args += ["--set", o]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["global_step"] == 1 and Path(summary["adapter"]).is_dir()
    bad = runner.invoke(app, ["train", "tiny_demo", "--set", "lora.rnk=4"])
    assert bad.exit_code == 2 and "lora.rnk" in bad.output
    missing = runner.invoke(app, ["train", "no_such_config"])
    assert missing.exit_code == 2 and "wang2025_ft" in missing.output
