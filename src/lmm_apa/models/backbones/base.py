"""What the rest of the toolkit needs from a backbone, and nothing more.

A backbone module (``qwen2_audio.py``, ``phi4_mm.py``; a third backbone is one new module registered
in ``lmm_apa.models.backbones``) answers four questions explicitly:

1. how the chat turn is built around the audio (``build_batch``),
2. which modules LoRA targets (``lora_target_modules``),
3. what "Unfreeze" trains besides the adapter (``unfreeze_modules``: audio encoder + projector),
4. how audio is prepared (``sampling_rate``, ``max_audio_seconds``).

``build_batch`` is the single place where text and audio meet the model. Training calls it with
``targets`` (labels are the answer tokens only; prompt, audio and padding positions are -100);
inference calls it without (left padding, so generation and template-constrained decoding can append
tokens to every row). Everything else (trainer, decoders, service) is backbone-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass
class Backbone:
    arch: str  # registry name: "qwen2-audio", "phi4-mm"
    model: Any  # a transformers PreTrainedModel (possibly wrapped by peft)
    tokenizer: Any
    feature_extractor: Any
    sampling_rate: int = 16000
    max_audio_seconds: float = 30.0
    lora_target_modules: list[str] = field(default_factory=list)
    unfreeze_modules: list[str] = field(default_factory=list)
    source: str = ""  # the id or path it was loaded from

    def build_batch(
        self,
        audios: Sequence[np.ndarray],
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
    ) -> dict:
        """Tensors for one batch. Implemented per backbone module."""
        raise NotImplementedError
