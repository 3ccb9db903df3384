"""Qwen2-Audio-7B-Instruct (Wang et al. 2025's backbone) through transformers' own classes.

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

LoRA targets (Wang et al. 2025: "LoRA rank 8 for all target modules"): every linear layer of the language
model, ``q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`` under ``model.language_model.layers``;
the audio encoder's linears (same names) are excluded.

"Unfreeze" (Ahn & Nam 2025's variant, available here too): LoRA + ``model.audio_tower`` +
``model.multi_modal_projector`` fully trained.

Audio limit: the encoder takes exactly ``2 * max_source_positions`` mel frames, i.e. 30 s for the real
model (``max_audio_seconds`` is read from the saved feature extractor / config). Longer clips raise
a clear error in ``build_batch``. The tiny test model uses 15 s (see ``lmm_apa.models.tiny``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lmm_apa.models.backbones.base import Backbone, BackboneSpec
from lmm_apa.models.backbones.tokenizer import load_tokenizer

# Real special tokens in their real order (ids 151643... after the 151643 BPE tokens).
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>")

SPEC = BackboneSpec(
    arch="qwen2-audio",
    hub_id="Qwen/Qwen2-Audio-7B-Instruct",
    model_type="qwen2_audio",
    sampling_rate=16000,
    min_audio_seconds=0.1,
    # 1500 encoder positions after a stride-2 conv over 100 mel frames/s (WhisperFeatureExtractor
    # chunk_length 30): exactly 30 s; longer input would be truncated by the feature extractor.
    max_audio_seconds=30.0,
    audio_tokens_per_second=25.0,  # 100 mel frames/s, conv stride 2, avg-pool stride 2
    audio_token="<|AUDIO|>",
    end_of_turn="<|im_end|>",
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    lora_layers_prefix="model.language_model.layers",
    unfreeze_modules=("model.audio_tower", "model.multi_modal_projector"),
    # Not quantized under QLoRA: the audio path (small, and trainable under Unfreeze) and the output head.
    quantization_skip_modules=("audio_tower", "multi_modal_projector", "lm_head"),
    # The Instruct chat template's rendering of one audio + one text part (vLLM's Qwen2-Audio example).
    vllm_prompt_format=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{control}{prompt}<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    vocab_size=156032,
    first_special_id=151643,
)
# Short names for the spec's facts (used by the tiny-model builder and the tests).
HUB_ID, MODEL_TYPE = SPEC.hub_id, SPEC.model_type
AUDIO_TOKEN, END_OF_TURN = SPEC.audio_token, SPEC.end_of_turn

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
    from transformers import Qwen2AudioForConditionalGeneration

    processor = load_processor(source, load_tokenizer(source))
    model = Qwen2AudioForConditionalGeneration.from_pretrained(source, **model_kwargs)
    return wrap(model, processor, str(source))


def load_processor(source: str, tokenizer):
    """The checkpoint's ``Qwen2AudioProcessor`` (feature extractor, chat template, audio tokens) around
    ``tokenizer``.

    Why not ``AutoProcessor.from_pretrained(source, tokenizer=tokenizer)``: transformers 5 loads the
    checkpoint's tokenizer there anyway and then drops it, ~4 s for the real 151k vocabulary on a CPU.
    Built here from the same parts (its processor config, its feature extractor) without that load."""
    from transformers import AutoFeatureExtractor, Qwen2AudioProcessor

    processor_dict, kwargs = Qwen2AudioProcessor.get_processor_dict(str(source))
    parts = {"feature_extractor": AutoFeatureExtractor.from_pretrained(str(source)), "tokenizer": tokenizer}
    args = [parts[name] for name in Qwen2AudioProcessor.get_attributes()]
    return Qwen2AudioProcessor.from_args_and_dict(args, processor_dict, **kwargs)


def wrap(model, processor, source: str) -> Qwen2AudioBackbone:
    """The ``Backbone`` around a model and its processor (loaded, or built in memory by the
    benchmarks): the clip limit is the spec's, or the loaded encoder's window where shorter."""
    fe = processor.feature_extractor
    if fe.sampling_rate != SPEC.sampling_rate:
        raise ValueError(f"{source}: feature extractor takes {fe.sampling_rate} Hz, Qwen2-Audio {SPEC.sampling_rate} Hz")
    encoder_frames = 2 * model.config.audio_config.max_source_positions
    max_seconds = min(SPEC.max_audio_seconds, fe.chunk_length, encoder_frames * fe.hop_length / fe.sampling_rate)
    return Qwen2AudioBackbone(
        spec=SPEC,
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=fe,
        processor=processor,
        max_audio_seconds=float(max_seconds),
        audio_token=processor.tokenizer.convert_ids_to_tokens(model.config.audio_token_index),
        source=source,
    )
