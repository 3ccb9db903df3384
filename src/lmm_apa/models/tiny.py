"""Tiny, randomly initialised models of the two exact backbone architectures.

No weights can be downloaded here, so every test and the demo run the real code path on these:
transformers' own model classes (``Qwen2AudioForConditionalGeneration``,
``Phi4MultimodalForCausalLM``) with tiny configs, the real feature-extractor classes with the real
settings, a byte-level BPE tokenizer trained locally with the real pre-tokenizer regex, the real
special tokens (in the real order, referenced by the configs' audio token ids) and the real chat
templates. Everything is saved with ``save_pretrained`` and loaded back with ``from_pretrained`` by
``load_backbone`` exactly like a hub checkpoint.

With ``vocabulary="real"`` the tokenizer is the backbone's real one instead (built from the rank file a
registry package ships, ``lmm_apa.models.tiny_tokenizer.real_tokenizer``) and the embedding has the
published row count: the tests run templates, parsing, constrained decoding and the backbone checks
on those too.

Sizes (seconds to build on CPU, a few MB on disk): language model hidden 128, 2 layers, 4 heads
(2 KV heads); audio encoder width 64, 2 layers; Phi-4's vision tower (unused here, but part of the
architecture) width 32, 2 layers. The Phi-4 folder also gets a random ``speech-lora/`` peft adapter
(rank 8) on the language model, like the real checkpoint's speech LoRA.

One deliberate difference: the tiny Qwen2-Audio encoder takes 15 s windows (``max_source_positions``
750, feature extractor ``chunk_length`` 15) instead of 30 s, halving the encoder cost of every test;
the synthetic corpus and the bundled SO762 sample are shorter than that. The real model stays 30 s.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmm_apa.models.backbones import ARCHS, check_arch, phi4_mm, qwen2_audio
from lmm_apa.models.compat import quiet_peft_checkpointing_probe
from lmm_apa.models.tiny_tokenizer import O200K_PRETOKENIZE_REGEX, QWEN2_PRETOKENIZE_REGEX, real_tokenizer, train_bpe

MARKER = "lmm_apa_tiny.json"
BPE_VOCAB = 3000
TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
QWEN_TINY_SECONDS = 15


def _padded_vocab(n: int, multiple: int = 64) -> int:
    """Embedding rows: the tokenizer's size rounded up, as the real checkpoints over-allocate."""
    return -(-n // multiple) * multiple


def _tokenizer(pattern: str, specials, seed: int, backend=None, **special_kwargs):
    """Train (or take ``backend``, a real vocabulary's ``tokenizers.Tokenizer``), and wrap as a
    transformers tokenizer that keeps that pipeline as it is."""
    from transformers import PreTrainedTokenizerFast

    backend = backend or train_bpe(pattern, BPE_VOCAB, list(specials), seed=seed)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_kwargs)


def real_special_ids(arch: str) -> dict[str, int]:
    """{special token: id} in the published tokenizer of ``arch`` (Qwen2-Audio: 151643-151648 in
    order; Phi-4: <|endoftext|> = 199999 and the rest at their offsets from it)."""
    if arch == "qwen2-audio":
        return {t: qwen2_audio.SPEC.first_special_id + i for i, t in enumerate(qwen2_audio.SPECIAL_TOKENS)}
    return {t: phi4_mm.SPEC.first_special_id + offset for t, offset in phi4_mm.SPECIAL_TOKEN_OFFSETS.items()}


def _text_sizes(arch: str, backend) -> dict:
    """The tiny language model's sizes; with a real vocabulary, the published embedding rows."""
    return dict(TEXT, vocab_size=ARCHS[arch].SPEC.vocab_size) if backend is not None else TEXT


def _declare_tokenizer_class(folder: Path, tokenizer_class: str) -> None:
    """Name ``tokenizer_class`` in the saved ``tokenizer_config.json`` as the real checkpoint does
    (Qwen2Tokenizer, GPT2Tokenizer). The pipeline stays the trained one in ``tokenizer.json``, which
    is what ``load_backbone`` loads (``lmm_apa.models.backbones.tokenizer``): so the tiny models meet
    the same class-versus-file question as the real checkpoints."""
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = tokenizer_class
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def qwen2_audio_config(tokenizer, text: dict, audio: dict):
    """A ``Qwen2AudioConfig`` with ``text`` / ``audio`` sizes around ``tokenizer``'s special tokens.

    Why one builder: the tiny models here and the full-size random models of the GPU benchmarks
    (``benchmarks/full_size.py``, published sizes) are the same architecture; only sizes differ.
    ``text`` may set ``vocab_size`` (default: the tokenizer's size padded to a multiple of 64)."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in qwen2_audio.SPECIAL_TOKENS}
    text_config = Qwen2Config(**{
        "vocab_size": _padded_vocab(len(tokenizer)), "max_position_embeddings": 8192, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"], **text,
    })
    audio_config = Qwen2AudioEncoderConfig(**{"num_mel_bins": 128, **audio})
    return Qwen2AudioConfig(audio_config=audio_config, text_config=text_config,
                            audio_token_index=ids[qwen2_audio.AUDIO_TOKEN])


def _save_qwen2_audio(out: Path, seed: int, audio_seconds: int | None = None, backend=None) -> None:
    seconds = audio_seconds or QWEN_TINY_SECONDS
    from transformers import (
        GenerationConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = _tokenizer(
        QWEN2_PRETOKENIZE_REGEX, qwen2_audio.SPECIAL_TOKENS, seed, backend,
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in qwen2_audio.SPECIAL_TOKENS}
    config = qwen2_audio_config(tokenizer, _text_sizes("qwen2-audio", backend), dict(
        encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, d_model=64, max_source_positions=seconds * 50,
    ))
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=seconds, n_fft=400,
        padding_value=0.0, return_attention_mask=True,
    )
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer,
                                    chat_template=qwen2_audio.CHAT_TEMPLATE)
    processor.save_pretrained(out)
    _declare_tokenizer_class(out, "Qwen2Tokenizer")


def _speech_cmvn(feature_extractor, seed: int):
    """Per-mel-bin mean and 1/std of Phi-4-multimodal's log-mel features over synthetic speech.

    Why: the real checkpoint ships these statistics (``encoder_embedding.global_mean`` /
    ``global_invstd``) and its encoder sees normalised features; left at their init (0 and 1) a
    random encoder sees raw log-mels (mean ~15, s.d. ~5), mostly their offset. (On its own this did
    not make the tiny model learn from the audio; ``_pass_through_init`` did.)"""
    import numpy as np
    import torch

    from lmm_apa.data.synth import speech_samples

    feats = [feature_extractor(wav, sampling_rate=16000, return_tensors="np")["audio_input_features"][0]
             for wav in speech_samples(n=24, seed=seed)]
    frames = np.concatenate(feats).astype(np.float64)
    return (torch.tensor(frames.mean(0), dtype=torch.float32),
            torch.tensor(1.0 / np.maximum(frames.std(0), 1e-3), dtype=torch.float32))


def _pass_through_init(part) -> None:
    """Variance-preserving (He) init of Phi-4-multimodal's convolutional subsampling and speech
    projector.

    Why: transformers initialises these layers with N(0, 0.02). In the subsampling (five
    convolutions and a projection) each layer then scales the signal by ~0.1, and a random
    encoder's subsampling output is ~1e-7 of its input, below the conformer's LayerNorm epsilon: the
    language model receives no audio content at all, only the number of audio tokens (measured:
    held-out sentence accuracy PCC 0.39, fluency, which pauses make longer, 0.73). The projector at
    N(0, 0.02) then shrinks what is left to the scale of the text embeddings' init; with He init
    the tiny model's audio reaches its language model as loudly as Qwen2-Audio's does (accuracy PCC
    0.85 on the same run). The real checkpoint's trained layers pass their input through; so must a
    tiny random one that is meant to learn from it."""
    import torch

    for module in part.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


def phi4_mm_config(tokenizer, text: dict, audio: dict, vision: dict):
    """A ``Phi4MultimodalConfig`` with ``text`` / ``audio`` / ``vision`` sizes around ``tokenizer``'s
    special tokens (the audio and image placeholders by name, as the checkpoint's config refers to
    them by id). Phi-4's LongRoPE factors are all 1.0: they only rescale rotary frequencies past the
    4,096 positions our sequences never reach. Shared with ``benchmarks/full_size.py``."""
    from transformers import Phi4MultimodalConfig

    text = {"vocab_size": _padded_vocab(len(tokenizer)), "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096, **text}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    rotary_half = int(head_dim * 0.75) // 2
    end_ids = [tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids(phi4_mm.END_OF_TURN)]
    return Phi4MultimodalConfig(
        rope_parameters={
            "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
            "short_factor": [1.0] * rotary_half, "long_factor": [1.0] * rotary_half,
        },
        tie_word_embeddings=True, bos_token_id=end_ids[0], pad_token_id=end_ids[0], eos_token_id=end_ids,
        audio_config=dict(audio, audio_token_id=tokenizer.convert_tokens_to_ids(phi4_mm.AUDIO_TOKEN)),
        vision_config=dict(vision, image_token_id=tokenizer.convert_tokens_to_ids(phi4_mm.IMAGE_TOKEN)),
        **text,
    )


def _save_phi4_mm(out: Path, seed: int, backend=None) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, Phi4MultimodalFeatureExtractor
    from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalForCausalLM

    specials = sorted(phi4_mm.SPECIAL_TOKEN_OFFSETS, key=phi4_mm.SPECIAL_TOKEN_OFFSETS.get)
    tokenizer = _tokenizer(
        O200K_PRETOKENIZE_REGEX, specials, seed, backend,
        bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
        extra_special_tokens={"audio_token": phi4_mm.AUDIO_TOKEN, "image_token": phi4_mm.IMAGE_TOKEN},
    )
    tokenizer.chat_template = phi4_mm.CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = phi4_mm_config(
        tokenizer, _text_sizes("phi4-mm", backend),
        audio=dict(hidden_size=64, intermediate_size=128, num_blocks=2, num_attention_heads=4, ext_pw_out_channel=64,
                   depthwise_separable_out_channel=64, nemo_conv_channels=32),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    )
    model = Phi4MultimodalForCausalLM(config)
    feature_extractor = Phi4MultimodalFeatureExtractor()
    audio_embed = model.model.embed_tokens_extend.audio_embed
    mean, invstd = _speech_cmvn(feature_extractor, seed)
    audio_embed.encoder.encoder_embedding.global_mean.copy_(mean)
    audio_embed.encoder.encoder_embedding.global_invstd.copy_(invstd)
    for part in (audio_embed.encoder.embed, audio_embed.up_proj_for_speech, audio_embed.down_proj_for_speech):
        _pass_through_init(part)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids[phi4_mm.END_OF_TURN], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _declare_tokenizer_class(out, "GPT2Tokenizer")
    feature_extractor.save_pretrained(out)
    # The checkpoint's own speech LoRA, random here (both matrices, so it is not a no-op).
    spec = phi4_mm.SPEC
    targets = rf"^{spec.lora_layers_prefix}\.\d+\..*\.({'|'.join(spec.lora_target_modules)})$"
    torch.manual_seed(seed + 1)
    with quiet_peft_checkpointing_probe():
        lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets,
                                                init_lora_weights=False))
    for name, p in lora.named_parameters():  # keep the random LoRA small next to the base weights
        if "lora_" in name:
            p.data.mul_(0.1)
    lora.save_pretrained(out / phi4_mm.SPEECH_LORA_SUBFOLDER)


SAVERS = {"qwen2-audio": _save_qwen2_audio, "phi4-mm": _save_phi4_mm}


def save_tiny_model(out: str | Path, arch: str, seed: int = 0, audio_seconds: int | None = None,
                    vocabulary: str = "trained", vocabulary_cache: str | Path | None = None) -> Path:
    """Write a tiny random ``arch`` model + tokenizer + feature extractor (+ processor) to ``out``;
    ``load_backbone(out)`` loads it offline. Returns ``out``. ``audio_seconds`` (Qwen2-Audio only)
    shrinks the encoder window further where all audio is short (the synthetic corpus: 6 s makes
    the encoder 2.5x cheaper than 15 s in the learning proofs and the demo).

    ``vocabulary="real"``: the backbone's real tokenizer (built from the rank file a registry package
    ships: the test extra) and the published embedding rows instead of the small trained one, so
    tokenization is exactly the real checkpoint's; ``vocabulary_cache`` keeps the built tokenizer."""
    import torch
    from transformers.utils import logging as hf_logging

    check_arch(arch)
    if vocabulary not in ("trained", "real"):
        raise ValueError(f"vocabulary must be 'trained' or 'real', not {vocabulary!r}")
    backend = real_tokenizer(arch, real_special_ids(arch), vocabulary_cache) if vocabulary == "real" else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" bars are noise for a 5 MB model
    try:
        if arch == "qwen2-audio" and audio_seconds is not None:
            SAVERS[arch](out, seed, audio_seconds=int(audio_seconds), backend=backend)
        else:
            SAVERS[arch](out, seed, backend=backend)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    marker = {
        "arch": arch,
        "seed": seed,
        "random_weights": True,
        "vocabulary": vocabulary,
        "note": "Tiny randomly initialised model of the exact architecture, for tests and demos only "
        "(lmm_apa.models.tiny). Its outputs mean nothing until fine-tuned.",
        "real_checkpoint": ARCHS[arch].HUB_ID,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    (out / "README.md").write_text(
        f"# Tiny random {arch} model\n\n{marker['note']}\n\nSame architecture and processor classes as "
        f"`{marker['real_checkpoint']}`; "
        + ("the real tokenizer (real vocabulary, special tokens and chat template).\n" if vocabulary == "real" else
           "tokenizer trained locally with the real special tokens and chat template.\n")
    )
    return out
