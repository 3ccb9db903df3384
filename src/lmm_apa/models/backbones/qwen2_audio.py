"""Qwen2-Audio-7B-Instruct (seed 001's backbone) through transformers' own classes.

Model: ``Qwen2AudioForConditionalGeneration`` (Whisper-style audio encoder ``model.audio_tower`` ->
linear projector ``model.multi_modal_projector`` -> Qwen2 language model ``model.language_model``).
Processor: ``Qwen2AudioProcessor`` = ``WhisperFeatureExtractor`` (128 mel bins, 16 kHz, padded to
``chunk_length`` = 30 s) + Qwen2 tokenizer + the checkpoint's chat template.

Chat turn (the Instruct checkpoint's ChatML template, audio first, then the instruction)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\nAudio 1: <|audio_bos|><|AUDIO|>...<|AUDIO|><|audio_eos|>\\n{prompt}<|im_end|>\\n
    <|im_start|>assistant\\n{answer}<|im_end|>

``<|AUDIO|>`` is repeated once per audio frame after the encoder's 4x downsampling (25 per second), as
``Qwen2AudioProcessor`` does; the labels cover ``{answer}<|im_end|>`` only.

LoRA targets (seed 001: "LoRA rank 8 for all target modules"): every linear layer of the language
model, ``q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`` under ``model.language_model.layers``;
the audio encoder's linears (same names) are excluded.

"Unfreeze" (seed 002's variant, available here too): LoRA + ``model.audio_tower`` +
``model.multi_modal_projector`` fully trained.

Audio limit: the encoder takes exactly ``2 * max_source_positions`` mel frames, i.e. 30 s for the real
model (``max_audio_seconds`` is read from the saved feature extractor / config). Longer clips raise
a clear error in ``build_batch``. The tiny test model uses 15 s (see ``lmm_apa.models.tiny``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmm_apa.models.backbones.base import Backbone

HUB_ID = "Qwen/Qwen2-Audio-7B-Instruct"
MODEL_TYPE = "qwen2_audio"
# Real special tokens in their real order (ids 151643... after the 151643 BPE tokens).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
AUDIO_TOKEN = "<|AUDIO|>"
END_OF_TURN = "<|im_end|>"
LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_LAYERS_PREFIX = "model.language_model.layers"
UNFREEZE_MODULES = ["model.audio_tower", "model.multi_modal_projector"]
# Not quantized under QLoRA: the audio path (small, and trainable under Unfreeze) and the output head.
QUANTIZATION_SKIP_MODULES = ["audio_tower", "multi_modal_projector", "lm_head"]

# The Instruct checkpoint's chat template (identical to Qwen2AudioProcessor.default_chat_template).
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content or message['type'] == 'audio' or content['type'] == 'audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)


def num_audio_tokens(feature_lengths: Sequence[int]) -> list[int]:
    """Audio tokens per clip from its mel-frame count (conv stride 2, then avg-pool stride 2), the
    formula of ``Qwen2AudioProcessor``."""
    return [(((int(n) - 1) // 2 + 1) - 2) // 2 + 1 for n in feature_lengths]


class Qwen2AudioBackbone(Backbone):
    def prompt_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "audio", "audio_url": "<audio>"}, {"type": "text", "text": prompt}]}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    @property
    def chat_template(self) -> str:
        if self.processor is not None and getattr(self.processor, "chat_template", None):
            return self.processor.chat_template
        return self.tokenizer.chat_template or CHAT_TEMPLATE

    def audio_inputs(self, audios: Sequence[np.ndarray]) -> tuple[dict, list[int]]:
        feats = self.feature_extractor(
            [np.asarray(a, dtype=np.float32) for a in audios],
            sampling_rate=self.sampling_rate,
            return_attention_mask=True,
            padding="max_length",
            return_tensors="pt",
        )
        mask = feats["attention_mask"]
        return (
            {"input_features": feats["input_features"], "feature_attention_mask": mask},
            num_audio_tokens(mask.sum(-1).tolist()),
        )


def load(source: str, model_kwargs: dict) -> Qwen2AudioBackbone:
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    processor = AutoProcessor.from_pretrained(source)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(source, **model_kwargs)
    fe = processor.feature_extractor
    encoder_frames = 2 * model.config.audio_config.max_source_positions
    max_seconds = min(fe.chunk_length, encoder_frames * fe.hop_length / fe.sampling_rate)
    return Qwen2AudioBackbone(
        arch="qwen2-audio",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=fe,
        processor=processor,
        sampling_rate=fe.sampling_rate,
        max_audio_seconds=float(max_seconds),
        lora_target_modules=list(LORA_TARGET_MODULES),
        unfreeze_modules=list(UNFREEZE_MODULES),
        lora_layers_prefix=LORA_LAYERS_PREFIX,
        end_of_turn=END_OF_TURN,
        audio_token=getattr(processor, "audio_token", AUDIO_TOKEN),
        source=str(source),
    )
