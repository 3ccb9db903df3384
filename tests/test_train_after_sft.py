"""Preference training after SFT (``init_adapter``), DPO's SFT reference, per-epoch adapters.

One short SFT run of the tiny Qwen2-Audio (module fixture) is the starting point of the others."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lmm_apa.train.config import load_config
from lmm_apa.train.losses import sequence_logps
from lmm_apa.train.run import REFERENCE_ADAPTER, prepare_backbone, train_from_config
from lmm_apa.train.trainer import answer_logits, reference_policy
from train_utils import train_overrides, write_small_synth

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    return write_small_synth(tmp_path_factory, "after-sft-synth", seed=5)


def _overrides(model, corpus, out, *extra):
    """The shared short run with this file's own values: lr 5e-2, no LoRA dropout, no intermediate
    checkpoints."""
    return train_overrides(model, corpus, out, "save_steps=100", "lr=5e-2", "lora.dropout=0.0",
                           "save_total_limit=1", *extra)


@pytest.fixture(scope="module")
def sft_adapter(tiny_qwen2_audio, small_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "run"
    summary = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "max_steps=3"))
    adapter = Path(summary["adapter"])
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)  # SFT moved B off zero
    return adapter


def _lora_state(model, adapter_name):
    """{parameter name without the adapter name: tensor} of one named peft adapter."""
    return {k.replace(f".{adapter_name}.", "."): v.detach().clone() for k, v in model.named_parameters()
            if f".{adapter_name}." in k and "lora_" in k}


def _saved_state(adapter_dir):
    return load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))


def _probe_batch(backbone, target="Sentence Accuracy Score: 7"):
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(backbone.sampling_rate)).astype(np.float32)
    batch = backbone.build_batch([audio], ["Please score the accuracy. Reference text: WE CALL IT BEAR."], [target])
    batch = dict(batch)
    return batch, batch.pop("labels")


def _logps(model, batch, labels):
    with torch.no_grad():
        return sequence_logps(answer_logits(model, batch, labels).logits, labels, average=False)


def test_dpo_from_an_sft_adapter_starts_at_it_and_takes_it_as_reference(tiny_qwen2_audio, small_synth, sft_adapter, tmp_path):
    from lmm_apa.models.adapters import load_adapter
    from lmm_apa.models.backbones import load_backbone

    cfg = load_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "dpo", "objective=dpo",
                                              f"init_adapter={sft_adapter}", "device=cpu"))
    backbone = prepare_backbone(cfg)
    model = backbone.model
    assert set(model.peft_config) == {"default", REFERENCE_ADAPTER}
    trained, reference = _lora_state(model, "default"), _lora_state(model, REFERENCE_ADAPTER)
    # starts at the SFT weights: both adapters equal the saved SFT adapter, value for value
    saved = _saved_state(sft_adapter)
    assert len(trained) == len(saved) > 0
    for name, tensor in trained.items():
        saved_name = next(k for k in saved if name.endswith(k.split("base_model.model.", 1)[-1]))
        assert torch.equal(tensor, saved[saved_name].to(tensor.dtype))
        assert torch.equal(reference[name], tensor)
    assert all(p.requires_grad for k, p in model.named_parameters() if ".default." in k and "lora_" in k)
    assert not any(p.requires_grad for k, p in model.named_parameters() if f".{REFERENCE_ADAPTER}." in k)

    # reference log-probs == the SFT model's, loaded on its own the way predict loads it
    sft = load_backbone(tiny_qwen2_audio, device="cpu")
    load_adapter(sft, sft_adapter)
    batch, labels = _probe_batch(backbone)
    expected = _logps(sft.model, batch, labels)
    with reference_policy(model, REFERENCE_ADAPTER):
        ref = _logps(model, batch, labels)
    torch.testing.assert_close(ref, expected, rtol=1e-5, atol=1e-5)
    # ... and stays so when the trained adapter moves; afterwards the trained adapter is active and trainable
    with torch.no_grad():
        for k, p in model.named_parameters():
            if ".default." in k and "lora_B" in k:
                p.add_(0.5)
    moved = _logps(model, batch, labels)
    assert not torch.allclose(moved, expected)
    with reference_policy(model, REFERENCE_ADAPTER):
        torch.testing.assert_close(_logps(model, batch, labels), expected, rtol=1e-5, atol=1e-5)
    assert model.active_adapter == "default" and model.training
    assert all(p.requires_grad for k, p in model.named_parameters() if ".default." in k and "lora_" in k)
    # without init_adapter the reference is the base model (adapter disabled)
    base = load_backbone(tiny_qwen2_audio, device="cpu")
    with reference_policy(model, None):
        torch.testing.assert_close(_logps(model, batch, labels), _logps(base.model, batch, labels), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_dpo_run_after_sft_starts_at_log2_trains_and_saves_one_adapter(tiny_qwen2_audio, small_synth, sft_adapter, tmp_path):
    out = tmp_path / "dpo"
    summary = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "objective=dpo",
                                                         f"init_adapter={sft_adapter}", "max_steps=2",
                                                         "dpo_ce_weight=0.5"))
    rows = [json.loads(l) for l in (out / "loss_log.jsonl").read_text().splitlines() if l.strip()]
    # step 1: the policy IS its SFT reference, so L_DPO = log 2 and the margin is 0; the CE term adds on
    assert rows[0]["dpo"] == pytest.approx(math.log(2), abs=1e-5) and rows[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    for r in rows:
        assert r["loss"] == pytest.approx(r["dpo"] + 0.5 * r["ce"], rel=1e-4)
    assert rows[1]["margin"] != 0.0
    adapter = Path(summary["adapter"])
    assert not (adapter / REFERENCE_ADAPTER).exists()  # the frozen reference is not part of the result
    info = json.loads((adapter / "lmm_apa_adapter.json").read_text())
    assert info["init_adapter"] == str(sft_adapter) and info["objective"] == "dpo"
    before, after = _saved_state(sft_adapter), _saved_state(adapter)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_simpo_from_an_sft_adapter_continues_it(tiny_qwen2_audio, small_synth, sft_adapter, tmp_path):
    cfg = load_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "simpo", "objective=simpo",
                                              f"init_adapter={sft_adapter}", "device=cpu"))
    model = prepare_backbone(cfg).model
    assert set(model.peft_config) == {"default"}  # SimPO needs no reference
    saved = _saved_state(sft_adapter)
    trained = _lora_state(model, "default")
    assert len(trained) == len(saved)
    assert sum(float(v.abs().sum()) for v in trained.values()) == pytest.approx(
        sum(float(v.abs().sum()) for v in saved.values()), rel=1e-6)


def test_init_adapter_mistakes_are_named(tiny_qwen2_audio, small_synth, sft_adapter, tmp_path):
    missing = tmp_path / "no-such-adapter"
    cfg = load_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "x", "objective=dpo",
                                              f"init_adapter={missing}", "device=cpu"))
    with pytest.raises(FileNotFoundError, match="no-such-adapter"):
        prepare_backbone(cfg)
    cfg = load_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, tmp_path / "x", "objective=simpo",
                                              f"init_adapter={sft_adapter}", "device=cpu", "method=full"))
    with pytest.raises(ValueError, match="method 'lora'"):
        prepare_backbone(cfg)
    with pytest.raises(ValueError, match="dpo_ce_weight"):
        load_config("tiny_demo", ["objective=simpo", "dpo_ce_weight=0.1"])


@pytest.mark.slow
def test_save_every_epoch_keeps_one_adapter_per_epoch(tiny_qwen2_audio, small_synth, tmp_path):
    out = tmp_path / "epochs"
    summary = train_from_config("tiny_demo", _overrides(tiny_qwen2_audio, small_synth, out, "epochs=2",
                                                         "save_every_epoch=true", "limit=4"))
    assert summary["global_step"] == 4  # 4 utterances / batch 2 = 2 steps per epoch
    assert [Path(p).name for p in summary["epoch_adapters"]] == ["adapter-epoch1", "adapter-epoch2"]
    first, second, final = (_saved_state(out / n) for n in ("adapter-epoch1", "adapter-epoch2", "adapter"))
    assert all(torch.equal(second[k], final[k]) for k in final)  # the last epoch's adapter is the final one
    assert any(not torch.equal(first[k], final[k]) for k in final)
    info = json.loads((out / "adapter-epoch1" / "lmm_apa_adapter.json").read_text())
    assert info["arch"] == "qwen2-audio" and (out / "adapter-epoch1" / "tokenizer_config.json").is_file()
