"""Tiny backbones: saved and loaded like hub checkpoints, chat layout, tokenization, batches."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lmm_apa.models.backbones import ARCHS, IGNORE_INDEX, ensure_control_tokens, load_backbone, phi4_mm, resolve_arch

torch.set_num_threads(2)
SO762_MINI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speechocean762-mini"


def real_audios(n=2):
    """Real SO762 recordings when the sample is present (real lengths), else noise of similar lengths;
    each cut to at most 3.9 s, under the real-vocabulary Qwen2-Audio model's 4 s encoder window
    (test_models_real_vocab). The sample's first two recordings last 3.05 and 3.84 s: nothing is cut."""
    import soundfile as sf

    wavs = sorted(SO762_MINI.glob("WAVE/*/*.WAV"))[:n]
    if len(wavs) == n:
        return [sf.read(w, dtype="float32")[0][: int(3.9 * 16000)] for w in wavs]
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (2.7, 3.7)][:n]


@pytest.fixture(params=["qwen2-audio", "phi4-mm"])
def arch_path(request, tiny_qwen2_audio, tiny_phi4_mm):
    return request.param, {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[request.param]


def test_tiny_models_load_with_transformers_own_classes(tiny_qwen2_audio, tiny_phi4_mm):
    from transformers import AutoFeatureExtractor, AutoProcessor, AutoTokenizer, Qwen2AudioForConditionalGeneration
    from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalForCausalLM

    q = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio)
    qp = AutoProcessor.from_pretrained(tiny_qwen2_audio)
    assert type(qp).__name__ == "Qwen2AudioProcessor"
    assert type(qp.feature_extractor).__name__ == "WhisperFeatureExtractor"
    assert type(qp.tokenizer).__name__ == "Qwen2Tokenizer"
    assert q.config.audio_token_id == qp.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    # the encoder window and the feature extractor's chunk agree (the encoder checks it)
    assert 2 * q.config.audio_config.max_source_positions == qp.feature_extractor.nb_max_frames

    p = Phi4MultimodalForCausalLM.from_pretrained(tiny_phi4_mm)
    pt = AutoTokenizer.from_pretrained(tiny_phi4_mm)
    assert type(pt).__name__ == "GPT2Tokenizer"
    assert type(AutoFeatureExtractor.from_pretrained(tiny_phi4_mm)).__name__ == "Phi4MultimodalFeatureExtractor"
    # placeholders named as the converted checkpoint names them (200011 / 200010), found through the config
    audio_token = pt.convert_ids_to_tokens(p.config.audio_config.audio_token_id)
    image_token = pt.convert_ids_to_tokens(p.config.vision_config.image_token_id)
    assert (audio_token, image_token) == (phi4_mm.SPEC.audio_token, phi4_mm.IMAGE_TOKEN) == ("<|endoftext11|>", "<|endoftext10|>")
    assert pt.audio_token == audio_token and pt.image_token == image_token
    # the real relative layout: 199999 <|endoftext|>, image 200010, audio 200011, <|end|> 200020, <|user|> 200021
    eot = pt.convert_tokens_to_ids("<|endoftext|>")
    assert [pt.convert_tokens_to_ids(t) - eot for t in (image_token, audio_token, "<|end|>", "<|user|>")] == [11, 12, 21, 22]
    assert (tiny_phi4_mm / "speech-lora" / "adapter_config.json").is_file()
    for path, model in ((tiny_qwen2_audio, q), (tiny_phi4_mm, p)):
        assert (path / "lmm_apa_tiny.json").is_file()
        assert sum(x.numel() for x in model.parameters()) < 3_000_000
        assert len(AutoTokenizer.from_pretrained(path)) <= model.get_input_embeddings().num_embeddings


@pytest.mark.parametrize("layout", ["processor_config", "preprocessor_config"])
def test_qwen2_audio_processor_is_the_checkpoints_own_around_the_loaded_tokenizer(layout, tiny_qwen2_audio, tmp_path,
                                                                                  monkeypatch):
    """load_backbone builds the processor without transformers' second tokenizer load: the same
    processor AutoProcessor gives (feature extractor, chat template, audio tokens), holding the very
    tokenizer the backbone uses. Both layouts: transformers 5's (the feature extractor inside
    ``processor_config.json``, as the tiny models are saved) and the hub checkpoint's older one (a
    separate ``preprocessor_config.json``, no processor config)."""
    import shutil

    from transformers import AutoProcessor
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from lmm_apa.models.backbones import qwen2_audio

    path = tmp_path / layout
    shutil.copytree(tiny_qwen2_audio, path)
    template = path / "chat_template.jinja"  # a checkpoint's own template, not one a default could match
    template.write_text(template.read_text() + "{# this checkpoint's own template #}")
    if layout == "preprocessor_config":
        AutoProcessor.from_pretrained(path).feature_extractor.save_pretrained(path)
        (path / "processor_config.json").unlink()
    loaded, tokenizer_loads = [], []
    real_load_tokenizer, real_from_pretrained = qwen2_audio.load_tokenizer, PreTrainedTokenizerBase._from_pretrained.__func__

    def counting_from_pretrained(cls, *args, **kwargs):
        tokenizer_loads.append(cls.__name__)
        return real_from_pretrained(cls, *args, **kwargs)

    monkeypatch.setattr(qwen2_audio, "load_tokenizer", lambda source: loaded.append(real_load_tokenizer(source)) or loaded[-1])
    monkeypatch.setattr(PreTrainedTokenizerBase, "_from_pretrained", classmethod(counting_from_pretrained))
    b = load_backbone(path)
    assert len(tokenizer_loads) == 1, tokenizer_loads  # the checkpoint's tokenizer is read once
    assert b.processor.tokenizer is loaded[0]
    monkeypatch.undo()
    reference = AutoProcessor.from_pretrained(path)
    assert reference.chat_template.endswith("{# this checkpoint's own template #}")
    assert type(b.processor) is type(reference)
    assert b.processor.to_dict() == reference.to_dict()
    assert b.processor.chat_template == reference.chat_template
    assert b.processor.feature_extractor.to_dict() == reference.feature_extractor.to_dict()


def test_arch_is_inferred_from_the_saved_config(tiny_qwen2_audio, tiny_phi4_mm, tmp_path):
    assert resolve_arch(tiny_qwen2_audio) == "qwen2-audio"
    assert resolve_arch(tiny_phi4_mm) == "phi4-mm"
    with pytest.raises(ValueError, match="unknown backbone arch"):
        resolve_arch(tiny_qwen2_audio, arch="whisper")
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_arch(tmp_path)


def test_chat_turn_layouts(tiny_qwen2_audio, tiny_phi4_mm):
    q = load_backbone(tiny_qwen2_audio)
    assert q.prompt_text("Rate it.") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nRate it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    p = load_backbone(tiny_phi4_mm)
    # Ahn & Nam 2025 figure 3: the control token comes before the audio
    audio = p.tokenizer.convert_ids_to_tokens(p.model.config.audio_config.audio_token_id)
    assert p.audio_token == audio
    assert p.prompt_text("<|APA|>Rate it.") == f"<|user|><|APA|>{audio}Rate it.<|end|><|assistant|>"
    assert p.prompt_text("Rate it.") == f"<|user|>{audio}Rate it.<|end|><|assistant|>"
    assert q.end_of_turn == "<|im_end|>" and p.end_of_turn == "<|end|>"
    assert set(q.eos_token_ids) >= {q.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    assert set(p.eos_token_ids) >= {p.tokenizer.convert_tokens_to_ids("<|end|>")}


def test_digits_split_like_the_real_tokenizers(tiny_qwen2_audio, tiny_phi4_mm):
    q = load_backbone(tiny_qwen2_audio).tokenizer
    p = load_backbone(tiny_phi4_mm).tokenizer
    count = lambda tok, s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    assert count(q, "10") == 2 and count(q, "7") == 1 and count(q, "100") == 3  # Qwen2: one digit per token
    assert count(p, "10") == 1 and count(p, "100") == 1 and count(p, "1000") == 2  # o200k: runs of 1-3
    for tok in (q, p):
        text = "Word Scores: WE/10/10/10 CALL/7/5/7 {'accuracy': 8}"
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_control_tokens_stay_plain_text(arch_path):
    check_control_tokens_stay_plain_text(load_backbone(arch_path[1]))


def check_control_tokens_stay_plain_text(b):
    """(Also run on the real vocabularies: tests/test_models_real_vocab.py.)"""
    ids = ensure_control_tokens(b)
    for token, token_ids in ids.items():
        assert len(token_ids) > 1, f"{token} must not be a single added token"
        assert token not in b.tokenizer.get_vocab()


def test_labels_are_exactly_the_answer_tokens(arch_path):
    arch, path = arch_path
    b = load_backbone(path)
    audios = real_audios()
    targets = ["Sentence Scores: 8 9 9 10 8", "{'accuracy': 10, 'fluency': 7}"]
    batch = b.build_batch(audios, ["<|APA|>Rate the audio.", "Evaluate the audio."], targets)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for i, target in enumerate(targets):
        labels = batch["labels"][i]
        keep = labels != IGNORE_INDEX
        assert b.tokenizer.decode(labels[keep]) == target + b.end_of_turn
        # right padding: real tokens first, the answer is the last real tokens of the row
        n_real = int(batch["attention_mask"][i].sum())
        assert batch["attention_mask"][i, :n_real].all() and not batch["attention_mask"][i, n_real:].any()
        assert torch.equal(keep.nonzero().flatten(), torch.arange(n_real - int(keep.sum()), n_real))
        assert torch.equal(batch["input_ids"][i][keep], labels[keep])
        # exactly the audio tokens the model will replace
        audio_id = b.tokenizer.convert_tokens_to_ids(b.audio_token)
        n_audio = int((batch["input_ids"][i] == audio_id).sum())
        assert n_audio > 0.9 * 25 * len(audios[i]) / 16000 * (1 if arch == "qwen2-audio" else 0.5)


def test_forward_loss_and_gradients_on_real_length_audio(arch_path):
    arch, path = arch_path
    b = load_backbone(path, speech_lora=False) if arch == "phi4-mm" else load_backbone(path)
    batch = b.build_batch(real_audios(), ["Rate.", "Rate."], ["8 9 9 10 8", "10 10 10 10 10"])
    b.model.train()
    out = b.model(**batch)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    audio_params = [p for n, p in b.model.named_parameters() if any(n.startswith(m) for m in b.unfreeze_modules)]
    assert audio_params and any(p.grad is not None and p.grad.abs().sum() > 0 for p in audio_params), \
        "the loss must reach the audio encoder (audio is wired into the model)"


def test_manual_inputs_equal_the_transformers_processor(arch_path):
    """build_batch expands the audio placeholder exactly as the model's processor does."""
    check_manual_inputs_equal_the_transformers_processor(arch_path[0], load_backbone(arch_path[1]))


def check_manual_inputs_equal_the_transformers_processor(arch, b):
    audios = real_audios()
    prompts = ["<|APA|>Rate the audio.", "Evaluate."]
    batch = b.build_batch(audios, prompts)
    texts = [b.prompt_text(p) for p in prompts]
    if arch == "qwen2-audio":
        expected = b.processor(text=texts, audio=audios, sampling_rate=16000, padding=True, return_tensors="pt")
        expected_rows = [row[mask.bool()].tolist() for row, mask in zip(expected["input_ids"], expected["attention_mask"])]
        assert torch.equal(expected["input_features"], batch["input_features"])
    else:  # Phi4MultimodalProcessor's own replacement code (the image processor needs torchvision)
        from transformers import Phi4MultimodalProcessor

        proc = Phi4MultimodalProcessor.__new__(Phi4MultimodalProcessor)
        proc.tokenizer, proc.audio_processor = b.tokenizer, b.feature_extractor
        proc.audio_token, proc.audio_token_id = b.tokenizer.audio_token, b.tokenizer.audio_token_id
        proc.image_token, proc.image_token_id = b.tokenizer.image_token, b.tokenizer.image_token_id
        processed, replacements = proc._process_audio(audios, sampling_rate=16000)
        expanded, _ = proc.get_text_with_replacements(list(texts), [], [], replacements)
        expected_rows = [b.tokenizer(t, add_special_tokens=False)["input_ids"] for t in expanded]
        assert torch.equal(processed["audio_embed_sizes"], batch["audio_embed_sizes"])
    got_rows = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    assert got_rows == expected_rows


def test_left_padded_generation_equals_unbatched(arch_path):
    check_left_padded_generation_equals_unbatched(load_backbone(arch_path[1]))


def check_left_padded_generation_equals_unbatched(b):
    audios = real_audios()
    prompts = ["<|APA|>Rate the audio.", "Evaluate the pronunciation of this short recording please."]
    batch = b.build_batch(audios, prompts)
    assert not batch["attention_mask"][:, -1].eq(0).any(), "left padding: every row ends with a real token"
    kw = dict(max_new_tokens=6, do_sample=False, eos_token_id=b.eos_token_ids, pad_token_id=b.pad_token_id)
    with torch.no_grad():
        together = b.model.generate(**batch, **kw)[:, batch["input_ids"].shape[1]:]
        for i in range(2):
            one = b.build_batch(audios[i : i + 1], prompts[i : i + 1])
            alone = b.model.generate(**one, **kw)[:, one["input_ids"].shape[1]:]
            assert together[i, : alone.shape[1]].tolist() == alone[0].tolist()


def test_bad_batches_get_clear_errors(tiny_qwen2_audio):
    b = load_backbone(tiny_qwen2_audio)
    ok = np.zeros(16000, dtype=np.float32)
    with pytest.raises(ValueError, match="counts must match"):
        b.build_batch([ok, ok], ["a"])
    with pytest.raises(ValueError, match="audio 1 lasts 20.0 s"):
        b.build_batch([ok, np.zeros(16000 * 20, dtype=np.float32)], ["a", "b"])
    with pytest.raises(ValueError, match="audio 0 must be a non-empty 1-D"):
        b.build_batch([np.zeros((2, 100), dtype=np.float32)], ["a"])


def test_phi4_loads_its_speech_lora(tiny_phi4_mm):
    from peft import PeftModel

    with_lora = load_backbone(tiny_phi4_mm)
    without = load_backbone(tiny_phi4_mm, speech_lora=False)
    assert with_lora.own_lora == "speech-lora" and isinstance(with_lora.model, PeftModel)
    assert without.own_lora is None and not isinstance(without.model, PeftModel)
    batch = with_lora.build_batch(real_audios(1), ["<|MDD|>Transcribe."])
    with torch.no_grad():
        assert not torch.allclose(with_lora.model(**batch).logits, without.model(**batch).logits)


def test_registry_lists_both_backbones():
    assert set(ARCHS) == {"qwen2-audio", "phi4-mm"}
    for arch, module in ARCHS.items():
        spec = module.SPEC
        assert spec.arch == arch and spec.hub_id and spec.lora_target_modules and spec.unfreeze_modules
        assert callable(module.load) and callable(module.wrap)


@pytest.mark.parametrize("which", ["qwen2-audio", "phi4-mm"])
def test_audio_content_reaches_the_language_model(which, tiny_qwen2_audio, tiny_phi4_mm):
    """Two different recordings of one length must give the language model clearly different inputs
    at the audio positions, louder than its text embeddings. Guards the tiny builders: at
    transformers' N(0, 0.02) init, Phi-4's convolutional subsampling shrank audio ~1e7-fold and the
    model could only count audio tokens (lmm_apa.models.tiny._pass_through_init)."""
    bb = load_backbone({"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[which])
    model = bb.model.get_base_model() if hasattr(bb.model, "get_base_model") else bb.model
    seen = []
    hook = model.get_decoder().layers[0].register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()), with_kwargs=True)
    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    tone = (0.1 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    noise = (0.05 * rng.standard_normal(t.size)).astype(np.float32)
    try:
        with torch.no_grad():
            for audio in (tone, noise):
                model(**bb.build_batch([audio], ["Score it."]))
    finally:
        hook.remove()
    diff = (seen[0] - seen[1])[0].norm(dim=-1)
    audio_positions = diff > 0
    text_row = model.get_input_embeddings().weight.norm(dim=-1).mean()
    assert 10 <= int(audio_positions.sum()) < diff.numel()  # text positions are untouched by the audio
    # measured: Qwen2-Audio 13x, Phi-4 62x (0.6x before the fix) the mean norm of a text embedding row
    assert diff[audio_positions].mean() > 2 * text_row, (diff[audio_positions].mean(), text_row)
