"""LoRA / Unfreeze / full / QLoRA on the tiny backbones; save-load round trips; bf16; checkpointing."""

import numpy as np
import pytest
import torch

from lmm_apa.models.adapters import apply_adapter, base_model, load_adapter, save_adapter, trainable_parameter_names
from lmm_apa.models.backbones import load_backbone

torch.set_num_threads(2)


def audios():
    rng = np.random.default_rng(1)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.6, 2.3)]


PROMPTS = ["<|APA|>Rate the audio.", "Evaluate."]
TARGETS = ["Sentence Scores: 8 9 9 10 8", "{'accuracy': 10}"]


@pytest.fixture(params=["qwen2-audio", "phi4-mm"])
def arch_path(request, tiny_qwen2_audio, tiny_phi4_mm):
    return request.param, {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[request.param]


def _train_step(b, lr=1e-2):
    b.model.train()
    batch = b.build_batch(audios(), PROMPTS, TARGETS)
    loss = b.model(**batch).loss
    loss.backward()
    opt = torch.optim.SGD([p for p in b.model.parameters() if p.requires_grad], lr=lr)
    opt.step()
    opt.zero_grad()
    b.model.eval()
    return loss.item()


def _logits(b):
    with torch.no_grad():
        return b.model(**b.build_batch(audios(), PROMPTS)).logits


def test_trainable_parameter_sets(arch_path):
    arch, path = arch_path
    lora = trainable_parameter_names(apply_adapter(load_backbone(path), "lora").model)
    unfreeze = trainable_parameter_names(apply_adapter(load_backbone(path), "unfreeze").model)
    full_b = apply_adapter(load_backbone(path), "full")
    full = trainable_parameter_names(full_b.model)

    assert lora and all("lora_" in n for n in lora)
    lm_prefix = "model.language_model.layers." if arch == "qwen2-audio" else "model.layers."
    assert all(lm_prefix in n for n in lora), "LoRA stays in the language model (not the audio encoder)"
    wanted = {"qwen2-audio": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
              "phi4-mm": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}}[arch]
    assert {n.split(".lora_")[0].split(".")[-1] for n in lora} == wanted

    extra = set(unfreeze) - set(lora)
    assert set(lora) <= set(unfreeze) and extra
    audio_parts = {"qwen2-audio": ("audio_tower", "multi_modal_projector"),
                   "phi4-mm": ("audio_embed.encoder", "up_proj_for_speech", "down_proj_for_speech")}[arch]
    assert all(any(part in n for part in audio_parts) for n in extra)
    assert all(any(part in n for n in extra) for part in audio_parts), "encoder and projector both trained"
    assert not any("lm_head" in n or "embed_tokens.weight" in n for n in unfreeze)

    assert len(full) == sum(1 for _ in full_b.model.parameters())


def test_phi4_lora_continues_its_speech_lora(tiny_phi4_mm):
    """Ahn & Nam 2025 train the checkpoint's speech LoRA: same tensors as shipped, now trainable."""
    from peft.utils import load_peft_weights

    shipped = load_peft_weights(str(tiny_phi4_mm / "speech-lora"))
    b = apply_adapter(load_backbone(tiny_phi4_mm), "lora", r=4)  # r is the shipped LoRA's, not 4
    params = dict(b.model.named_parameters())
    assert len(trainable_parameter_names(b.model)) == len(shipped)
    for key, value in shipped.items():
        name = key.replace(".weight", ".default.weight")
        assert params[name].requires_grad and torch.equal(params[name].detach(), value)


@pytest.mark.parametrize(
    "arch, method",
    [("qwen2-audio", "lora"), ("qwen2-audio", "unfreeze"), ("qwen2-audio", "full"), ("phi4-mm", "lora"), ("phi4-mm", "unfreeze")],
)
def test_adapter_round_trip_gives_identical_logits(arch, method, tiny_qwen2_audio, tiny_phi4_mm, tmp_path):
    path = {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[arch]
    b = apply_adapter(load_backbone(path), method)
    before = _logits(b)
    _train_step(b, lr=0.5)
    trained = _logits(b)
    assert not torch.allclose(before, trained), "the training step must change the model"
    if method == "unfreeze":  # the train helper saves with plain save_pretrained: the audio modules come along
        b.model.save_pretrained(tmp_path / "adapter")
    else:
        save_adapter(b, tmp_path / "adapter")
    reloaded = load_adapter(load_backbone(path), tmp_path / "adapter")
    assert torch.equal(trained, _logits(reloaded))
    if method == "unfreeze":  # and the encoder really changed and was restored
        name = next(n for n, p in b.model.named_parameters() if p.requires_grad and "modules_to_save" in n)
        assert torch.equal(dict(b.model.named_parameters())[name], dict(reloaded.model.named_parameters())[name])
        original = dict(base_model(load_backbone(path).model).named_parameters())
        base_name = name.replace("base_model.model.", "", 1).replace("modules_to_save.default.", "")
        assert not torch.equal(original[base_name], dict(b.model.named_parameters())[name])


def test_qlora_without_cuda_is_a_clear_error(tiny_qwen2_audio):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU error path does not apply")
    with pytest.raises(ValueError, match="QLoRA needs a CUDA GPU and bitsandbytes"):
        load_backbone(tiny_qwen2_audio, quantization="4bit")
    with pytest.raises(ValueError, match="unknown quantization"):
        load_backbone(tiny_qwen2_audio, quantization="3bit")


def test_unknown_method_and_full_qlora_rejected(tiny_qwen2_audio):
    with pytest.raises(ValueError, match="unknown adapter method"):
        apply_adapter(load_backbone(tiny_qwen2_audio), "prefix")
    with pytest.raises(ValueError, match="full fine-tuning cannot train 4-bit"):
        apply_adapter(load_backbone(tiny_qwen2_audio), "full", quantized=True)


def test_bf16_forward_on_cpu(arch_path):
    arch, path = arch_path
    b = load_backbone(path, dtype="bfloat16", device="cpu")
    assert next(b.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        out = b.model(**b.build_batch(audios(), PROMPTS, TARGETS))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(arch_path):
    arch, path = arch_path
    results = []
    for gc in (False, True):
        torch.manual_seed(0)
        b = apply_adapter(load_backbone(path), "unfreeze", dropout=0.0, gradient_checkpointing=gc)
        inner = b.model.base_model.model
        assert getattr(inner, "is_activation_checkpointing", None) in (gc, None)
        assert any(getattr(m, "gradient_checkpointing", False) for m in inner.modules()) == gc
        b.model.train()
        loss = b.model(**b.build_batch(audios(), PROMPTS, TARGETS)).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in b.model.named_parameters() if p.requires_grad and p.grad is not None}
        results.append((loss.item(), grads))
    (l0, g0), (l1, g1) = results
    assert l0 == pytest.approx(l1, rel=1e-5)
    assert g0.keys() == g1.keys() and len(g0) > 0
    for n in g0:
        assert torch.allclose(g0[n], g1[n], atol=1e-5, rtol=1e-4), n
