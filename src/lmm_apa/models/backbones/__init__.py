"""Backbone registry: ``load_backbone(source, arch=None, ...)`` picks the backbone module by ``arch`` or
by the saved config's ``model_type``, and loads model, tokenizer and feature extractor with
``from_pretrained`` (a hub id, or a local folder, which works offline).

A third backbone is one new module with a ``SPEC`` (``BackboneSpec``) and a ``load(source, model_kwargs)``
function returning a ``Backbone`` subclass (``prompt_text`` + ``audio_inputs``), added to ``ARCHS``.

Control tokens (Ahn & Nam 2025's ``<|APA|>`` / ``<|MDD|>``) stay plain text: they are NOT added to the
vocabulary. The paper introduces them "without modifying the model architecture" and keeps the
tokenizer frozen (figure 1), and a new token would need its embedding and output row trained, which
LoRA-only training does not do. So ``<|APA|>`` is a few ordinary tokens the LoRA learns to read;
``ensure_control_tokens`` only checks that they survive tokenization round trips.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmm_apa.models.backbones import phi4_mm, qwen2_audio
from lmm_apa.models.backbones.base import CONTROL_TOKENS, IGNORE_INDEX, Backbone, BackboneSpec
from lmm_apa.models.backbones.tokenizer import check_tokenizer

ARCHS = {module.SPEC.arch: module for module in (qwen2_audio, phi4_mm)}
SPECS: dict[str, BackboneSpec] = {arch: module.SPEC for arch, module in ARCHS.items()}
MODEL_TYPES = {spec.model_type: arch for arch, spec in SPECS.items()}
DEFAULT_SOURCE = qwen2_audio.SPEC.hub_id

__all__ = ["ARCHS", "SPECS", "Backbone", "BackboneSpec", "CONTROL_TOKENS", "IGNORE_INDEX", "load_backbone",
           "resolve_arch", "ensure_control_tokens", "spec_for", "check_backbone_tokenizer"]


def spec_for(arch: str) -> BackboneSpec:
    """The published checkpoint's facts for ``arch`` (audio limits, LoRA targets, prompt format ...)."""
    return SPECS[check_arch(arch)]


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone arch {arch!r}; known: {', '.join(ARCHS)}")
    return arch


def resolve_arch(source: str | Path, arch: str | None = None) -> str:
    """``arch`` if given, else from the config's ``model_type`` (local config.json, or the hub)."""
    if arch is not None:
        return check_arch(arch)
    path = Path(source)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a saved model folder)")
        model_type = json.loads(config_file.read_text()).get("model_type")
    else:
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(str(source)).model_type
    if model_type == "phi4mm":
        raise ValueError(
            f"{source}: this is the trust_remote_code revision of Phi-4-multimodal (model_type 'phi4mm'); "
            "use the transformers-native revision (model_type 'phi4_multimodal')"
        )
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{source}: model_type {model_type!r} is not a supported backbone ({', '.join(MODEL_TYPES)})"
        )
    return MODEL_TYPES[model_type]


def _torch_dtype(dtype, device):
    import torch

    if dtype is None or dtype == "auto":
        on_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        return torch.bfloat16 if on_cuda else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "float32": torch.float32, "fp32": torch.float32}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[dtype]


def quantization_config(arch: str, quantization: str):
    """bitsandbytes 4-bit NF4 (QLoRA): double quantization, bf16 compute; the audio path and the
    output head stay unquantized. A clear error where it cannot run."""
    if quantization not in ("4bit", "nf4"):
        raise ValueError(f"unknown quantization {quantization!r}; use '4bit' (QLoRA) or none")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            "QLoRA needs a CUDA GPU and bitsandbytes; no CUDA device is available here "
            "(train with LoRA in bf16/fp32 instead, or run on a GPU machine)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ValueError(
            "QLoRA needs a CUDA GPU and bitsandbytes; bitsandbytes is not installed (pip install 'lmm-apa[gpu]')"
        ) from e
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=list(SPECS[arch].quantization_skip_modules),
    )


def load_backbone(
    source: str | Path | None = None,
    arch: str | None = None,
    dtype=None,
    device: str | None = None,
    quantization: str | None = None,
    attn_implementation: str | None = None,
    **load_options,
) -> Backbone:
    """Load a backbone by hub id or local path (``None``: Qwen2-Audio-7B-Instruct).

    dtype: "bfloat16" / "float32" / ... or None (bf16 on CUDA, fp32 on CPU). device: "cpu", "cuda",
    "cuda:1", "auto" (accelerate's device map over all GPUs) or None (cuda when available).
    quantization: None or "4bit" (QLoRA). ``load_options`` go to the backbone module (phi4-mm:
    ``speech_lora=False`` skips the shipped speech LoRA).
    """
    import torch

    source = str(source) if source is not None else DEFAULT_SOURCE
    arch = resolve_arch(source, arch)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict = {"dtype": _torch_dtype(dtype, device)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization:
        kwargs["quantization_config"] = quantization_config(arch, quantization)
        kwargs["device_map"] = {"": 0} if device in ("cuda", "auto") else {"": device}
    elif device == "auto":
        kwargs["device_map"] = "auto"
    backbone = ARCHS[arch].load(source, kwargs, **load_options)
    check_backbone_tokenizer(backbone)
    if not quantization and device != "auto":
        backbone.model.to(device)
    backbone.model.eval()
    return backbone


def check_backbone_tokenizer(backbone: Backbone) -> None:
    """The loaded tokenizer (and the processor's, where it has its own) tokenizes as the checkpoint's
    tokenizer.json does, on probe strings plus this backbone's chat and placeholder tokens; a clear
    ValueError otherwise (see ``lmm_apa.models.backbones.tokenizer``)."""
    chat = backbone.prompt_text(CONTROL_TOKENS[0] + "Rate 1000 words: IT'S fine.") + "{'accuracy': 10}" + backbone.end_of_turn
    tokenizers = [backbone.tokenizer]
    processor_tokenizer = getattr(backbone.processor, "tokenizer", None)
    if processor_tokenizer is not None and processor_tokenizer is not backbone.tokenizer:
        tokenizers.append(processor_tokenizer)
    for tokenizer in tokenizers:
        check_tokenizer(tokenizer, backbone.source, extra_probes=[chat])


def ensure_control_tokens(backbone: Backbone) -> dict[str, list[int]]:
    """The token ids each control token becomes (plain text, see the module docstring); raises if a
    control token does not decode back to itself, which would make it unusable as a task marker."""
    out = {}
    for token in CONTROL_TOKENS:
        ids = backbone.tokenizer(token, add_special_tokens=False)["input_ids"]
        if backbone.tokenizer.decode(ids) != token:
            raise ValueError(f"{backbone.source}: control token {token} does not survive tokenization")
        out[token] = ids
    return out
