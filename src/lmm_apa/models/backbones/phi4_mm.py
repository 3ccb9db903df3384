"""Phi-4-multimodal-instruct (Ahn & Nam 2025's backbone) through transformers' own classes.

Model: ``transformers.models.phi4_multimodal.Phi4MultimodalForCausalLM`` (the transformers-native
checkpoint revision; no ``trust_remote_code``). Audio path: ``model.embed_tokens_extend.audio_embed``
= conformer ``encoder`` + projector ``up_proj_for_speech`` -> GELU -> ``down_proj_for_speech``; the
language model is Phi-4-mini (``model.layers``). Audio features: ``Phi4MultimodalFeatureExtractor``
(80 log-mel, 16 kHz). ``Phi4MultimodalProcessor`` also needs the image processor, which needs
torchvision; so inputs are built from the feature extractor + tokenizer directly, expanding the audio
token ``audio_embed_sizes[i]`` times exactly as ``Phi4MultimodalProcessor.replace_audio_token`` does
(the processor is used when it can be built; tests check both give the same ids).

Chat turn (Phi-4 format; Ahn & Nam 2025 put the control token before the audio, figure 3)::

    <|user|>{<|APA|> or <|MDD|>}<|endoftext11|>...<|endoftext11|>{prompt}<|end|><|assistant|>{answer}<|end|>

The audio placeholder is the token whose id is ``config.audio_config.audio_token_id`` (200011,
``<|endoftext11|>`` in the converted checkpoint's tokenizer). Labels cover ``{answer}<|end|>`` only; ``<|end|>`` and
``<|endoftext|>`` end generation.

Speech LoRA: Phi-4-multimodal is a mixture of LoRAs; its speech skills live in a LoRA adapter on the
language model that the checkpoint ships as a peft adapter in ``speech-lora/``. ``load`` wraps the
model with it (``PeftModel``, frozen) when present; Ahn & Nam 2025 fine-tune exactly this adapter, so
``apply_adapter(method="lora")`` continues training it rather than adding a new one, and
"Unfreeze" = speech LoRA + ``audio_embed.encoder`` + the speech projector. The speech LoRA targets
``qkv_proj o_proj gate_up_proj down_proj`` of ``model.layers`` (rank 320 in the real checkpoint).

Audio limit: no fixed encoder length; 40 s per clip here (the model card's limit for speech
prompts other than summarisation).

Batch invariance: transformers' Phi-4 audio encoder cannot mask padding. It adds the boolean
``audio_attention_mask`` to the float relative-position bias (padded frames get +0 instead of -inf,
so every clip attends to its batch-mates' padding), and the convolutional subsampling's last frames
read padding that the CMVN layer has already shifted away from zero. A clip beside a longer one, or
zero-padded with a mask, moved on the tiny model by up to 1.2e-2 in next-token log-probabilities
(3.7e-3 on answer tokens, 5.9e-3 on the constrained decoder's candidates). So ``wrap`` makes the encoder run each clip of a batch at its own length
(``encode_each_clip_alone``; the mask from ``audio_inputs`` gives the lengths) and re-pads the
outputs; everything after the encoder, the language model included, stays batched. Batched
log-probabilities then equal the clip alone to float rounding (tested to 1e-4 in
``tests/test_models_batch_invariance.py``). Cost: one encoder call per clip instead of one per batch.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from lmm_apa.models.backbones.base import Backbone, BackboneSpec, split_control_token
from lmm_apa.models.backbones.tokenizer import load_tokenizer

SPEC = BackboneSpec(
    arch="phi4-mm",
    hub_id="microsoft/Phi-4-multimodal-instruct",
    model_type="phi4_multimodal",
    sampling_rate=16000,
    min_audio_seconds=0.1,
    # No fixed encoder length (relative attention bias); 40 s is the model card's limit for speech
    # prompts other than summarisation.
    max_audio_seconds=40.0,
    audio_tokens_per_second=12.5,  # one token per 80 ms (10 ms mel hop, 8x conformer subsampling)
    # The converted checkpoint's names (transformers' conversion keeps the original tokenizer): the
    # audio placeholder is id 200011 = <|endoftext11|>, the image placeholder 200010 = <|endoftext10|>.
    audio_token="<|endoftext11|>",
    end_of_turn="<|end|>",
    lora_target_modules=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    lora_layers_prefix="model.layers",
    unfreeze_modules=(
        "model.embed_tokens_extend.audio_embed.encoder",
        "model.embed_tokens_extend.audio_embed.up_proj_for_speech",
        "model.embed_tokens_extend.audio_embed.down_proj_for_speech",
    ),
    quantization_skip_modules=("embed_tokens_extend", "lm_head"),
    # vLLM's Phi-4-multimodal placeholder convention; a control token stays in front of the audio.
    vllm_prompt_format="<|user|>{control}<|audio_1|>{prompt}<|end|><|assistant|>",
    own_lora_subfolder="speech-lora",
    vocab_size=200064,
    first_special_id=199999,
)
# Short names for the spec's facts (used by the tiny-model builder and the tests).
HUB_ID, MODEL_TYPE = SPEC.hub_id, SPEC.model_type
SPEECH_LORA_SUBFOLDER = SPEC.own_lora_subfolder
AUDIO_TOKEN, END_OF_TURN = SPEC.audio_token, SPEC.end_of_turn
IMAGE_TOKEN = "<|endoftext10|>"
# Real special tokens at their real offsets from <|endoftext|> (199999): <|endoftextN|> = 200000 + N
# for N < 18 (10 = image, 11 = audio), then the chat tokens 200018-200028.
SPECIAL_TOKEN_OFFSETS = {
    "<|endoftext|>": 0,
    **{f"<|endoftext{i}|>": i + 1 for i in range(18)},
    "<|endofprompt|>": 19,
    "<|assistant|>": 20,
    "<|end|>": 21,
    "<|user|>": 22,
    "<|system|>": 23,
    "<|tool|>": 24,
    "<|/tool|>": 25,
    "<|tool_call|>": 26,
    "<|/tool_call|>": 27,
    "<|tool_response|>": 28,
    "<|tag|>": 29,
}

# Phi-4-mini / Phi-4-multimodal-instruct chat template.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)


class Phi4MMBackbone(Backbone):
    def prompt_text(self, prompt: str) -> str:
        control, rest = split_control_token(prompt)
        messages = [{"role": "user", "content": control + self.audio_token + rest}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.tokenizer.chat_template or CHAT_TEMPLATE, tokenize=False,
            add_generation_prompt=True,
        )

    def audio_inputs(self, audios: Sequence[np.ndarray]) -> tuple[dict, list[int]]:
        # One recording at a time, then padded here: transformers' batched Phi4MultimodalFeatureExtractor
        # raises a size mismatch when two recordings of a batch differ by less than ~2 hops (its
        # frame-masking slice runs past the padded frames), and its batched path only exists to mimic
        # this unbatched result anyway.
        import torch

        feats = [self.feature_extractor([np.asarray(a, dtype=np.float32)], sampling_rate=self.sampling_rate,
                                        return_tensors="pt") for a in audios]
        lengths = [f["audio_input_features"].shape[1] for f in feats]
        width = max(lengths)
        features = torch.zeros(len(feats), width, feats[0]["audio_input_features"].shape[2])
        for i, f in enumerate(feats):
            features[i, : lengths[i]] = f["audio_input_features"][0]
        sizes = torch.cat([f["audio_embed_sizes"] for f in feats])
        out = {"audio_input_features": features, "audio_embed_sizes": sizes}
        if len(feats) > 1:
            out["audio_attention_mask"] = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
        return out, [int(n) for n in sizes]


def encode_each_clip_alone(model) -> None:
    """Make ``model``'s audio encoder run every clip of a padded batch at its own length (see the
    module docstring: the encoder's own masking lets padding leak). Rows are cut to the mel frames
    the mask marks, encoded one by one without a mask (exactly the unbatched call), and zero-padded
    back to a common width; the embedding reads only each row's first ``audio_embed_sizes[i]``
    frames. Idempotent; a call without a mask (one clip) is passed through unchanged.

    Done by swapping the encoder's class for a subclass, not by patching ``forward`` on the
    instance: peft's Unfreeze (``modules_to_save``) deep-copies the encoder, and a patched
    ``forward`` closure would keep calling the frozen original instead of the trained copy."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    encoder = base.model.embed_tokens_extend.audio_embed.encoder
    if not getattr(encoder, "_lmm_apa_per_clip", False):
        encoder.__class__ = _per_clip_class(type(encoder))


@functools.cache
def _per_clip_class(encoder_class: type) -> type:
    """``encoder_class`` with a forward that encodes each masked row alone (cached per class, so
    every wrapped encoder of one class shares one subclass)."""
    import torch

    def forward(self, hidden_states, mask=None, **kwargs):
        if mask is None:
            return encoder_class.forward(self, hidden_states, mask, **kwargs)
        lengths = mask.reshape(mask.shape[0], -1).sum(-1).tolist()
        outs = [encoder_class.forward(self, hidden_states[i : i + 1, : int(n)], None, **kwargs)
                for i, n in enumerate(lengths)]
        width = max(o.shape[1] for o in outs)
        return torch.cat([torch.nn.functional.pad(o, (0, 0, 0, width - o.shape[1])) for o in outs])

    return type(f"PerClip{encoder_class.__name__}", (encoder_class,),
                {"forward": forward, "_lmm_apa_per_clip": True, "__module__": encoder_class.__module__})


def _has_speech_lora(source: str) -> bool:
    path = Path(source)
    if path.exists():
        return (path / SPEECH_LORA_SUBFOLDER / "adapter_config.json").is_file()
    return True  # a hub id: the real checkpoint ships it


def load(source: str, model_kwargs: dict, speech_lora: bool = True) -> Phi4MMBackbone:
    from transformers import AutoFeatureExtractor
    from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalForCausalLM

    tokenizer = load_tokenizer(source)  # not the GPT2Tokenizer the config names: see .tokenizer
    feature_extractor = AutoFeatureExtractor.from_pretrained(source)
    processor = None
    if importlib.util.find_spec("torchvision") is not None:  # the image processor needs it
        from transformers import AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(source, tokenizer=tokenizer)
        except (ImportError, OSError, ValueError):
            processor = None
    model = Phi4MultimodalForCausalLM.from_pretrained(source, **model_kwargs)
    own_lora = None
    if speech_lora and _has_speech_lora(source):
        from peft import PeftModel

        from lmm_apa.models.compat import quiet_peft_checkpointing_probe

        with quiet_peft_checkpointing_probe():
            model = PeftModel.from_pretrained(model, source, subfolder=SPEECH_LORA_SUBFOLDER, is_trainable=False)
        own_lora = SPEECH_LORA_SUBFOLDER
    return wrap(model, tokenizer, feature_extractor, processor, str(source), own_lora)


def wrap(model, tokenizer, feature_extractor, processor, source: str, own_lora: str | None = None) -> Phi4MMBackbone:
    """The ``Backbone`` around a model and its processing parts (loaded, or built in memory by the
    benchmarks); the audio placeholder is the token the model's config names by id."""
    if feature_extractor.sampling_rate != SPEC.sampling_rate:
        raise ValueError(
            f"{source}: feature extractor takes {feature_extractor.sampling_rate} Hz, Phi-4 {SPEC.sampling_rate} Hz"
        )
    config = model.config
    encode_each_clip_alone(model)
    return Phi4MMBackbone(
        spec=SPEC,
        model=model,
        tokenizer=tokenizer,
        feature_extractor=feature_extractor,
        processor=processor,
        audio_token=tokenizer.convert_ids_to_tokens(config.audio_config.audio_token_id),
        own_lora=own_lora,
        source=source,
    )
