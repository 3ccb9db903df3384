"""One immutable spec per backbone: its facts are written once (the backbone's module) and agree with
what the loaded models do."""

import dataclasses

import numpy as np
import pytest
import torch

from lmm_apa.models.backbones import SPECS, load_backbone, phi4_mm, qwen2_audio, spec_for

torch.set_num_threads(2)


def _noise(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))).astype(np.float32)


@pytest.fixture(params=["qwen2-audio", "phi4-mm"])
def loaded(request, tiny_qwen2_audio, tiny_phi4_mm):
    return load_backbone({"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[request.param])


def test_specs_are_immutable_and_registered():
    assert set(SPECS) == {"qwen2-audio", "phi4-mm"}
    assert SPECS["qwen2-audio"] is qwen2_audio.SPEC and spec_for("phi4-mm") is phi4_mm.SPEC
    with pytest.raises(dataclasses.FrozenInstanceError):
        qwen2_audio.SPEC.max_audio_seconds = 60.0
    with pytest.raises(ValueError, match="unknown backbone arch"):
        spec_for("whisper")
    for spec in SPECS.values():
        assert 0 < spec.min_audio_seconds < spec.max_audio_seconds and spec.sampling_rate == 16000


def test_loaded_backbone_reads_its_spec(loaded):
    spec = loaded.spec
    assert loaded.arch == spec.arch and loaded.sampling_rate == loaded.feature_extractor.sampling_rate
    assert loaded.lora_target_modules == list(spec.lora_target_modules)
    assert loaded.unfreeze_modules == list(spec.unfreeze_modules)
    names = {n for n, _ in loaded.model.named_modules()}
    for module in spec.unfreeze_modules:  # "Unfreeze" names modules the architecture really has
        assert any(n.endswith(module) for n in names), module
    assert 0 < loaded.max_audio_seconds <= spec.max_audio_seconds
    assert loaded.audio_token == spec.audio_token  # the tiny models name placeholders as the checkpoints do


def test_audio_tokens_per_second_matches_the_encoder(loaded):
    """The trainer's length estimate (spec.audio_tokens) is within a token or two of build_batch's count."""
    audio_id = loaded.tokenizer.convert_tokens_to_ids(loaded.audio_token)
    for seconds in (1.0, 4.0, 9.5):
        batch = loaded.build_batch([_noise(seconds)], ["Rate it."])
        n = int((batch["input_ids"] == audio_id).sum())
        assert abs(n - loaded.spec.audio_tokens(seconds)) <= 2, (seconds, n)


def test_audio_limits_give_clear_errors(loaded):
    spec = loaded.spec
    with pytest.raises(ValueError, match=r"audio 0 lasts 0\.050 s, under this backbone's minimum of 0\.1 s"):
        loaded.build_batch([_noise(0.05)], ["Rate it."])
    loaded.build_batch([_noise(spec.min_audio_seconds)], ["Rate it."])  # the minimum itself is accepted
    with pytest.raises(ValueError, match="over this backbone's limit"):
        loaded.build_batch([_noise(loaded.max_audio_seconds + 0.5)], ["Rate it."])


def test_vllm_prompts():
    """Qwen2-Audio's vLLM prompt is its chat template's rendering; Phi-4's uses vLLM's <|audio_1|>."""
    q = qwen2_audio.SPEC.vllm_prompt("<|APA|>Rate {it}.")
    assert q.endswith("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n<|APA|>Rate {it}.<|im_end|>\n<|im_start|>assistant\n")
    assert phi4_mm.SPEC.vllm_prompt("<|MDD|>Transcribe.") == "<|user|><|MDD|><|audio_1|>Transcribe.<|end|><|assistant|>"
    assert phi4_mm.SPEC.vllm_prompt("Transcribe.") == "<|user|><|audio_1|>Transcribe.<|end|><|assistant|>"


def test_qwen_vllm_prompt_equals_the_chat_template(tiny_qwen2_audio):
    q = load_backbone(tiny_qwen2_audio)
    for instruction in ("Rate it.", "<|APA|>Score {'accuracy': 8}"):
        assert q.prompt_text(instruction) == q.spec.vllm_prompt(instruction)


def test_data_layer_limits_agree_with_the_specs():
    """data/ cannot import models/ (data flows one way): its own table must match until callers pass
    the spec's limits down."""
    from lmm_apa.data.audio import MAX_AUDIO_SECONDS

    assert MAX_AUDIO_SECONDS == {arch: spec.max_audio_seconds for arch, spec in SPECS.items()}
