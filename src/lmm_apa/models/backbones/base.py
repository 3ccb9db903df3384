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

``build_batch`` itself is shared (below); a backbone module subclasses ``Backbone`` with two small
methods: ``prompt_text`` (its chat template around one audio placeholder) and ``audio_inputs`` (its
feature extractor, and how many placeholder tokens each clip becomes).

Notes for callers: generation should stop on ``eos_token_ids`` (end of turn + eos) and pad with
``pad_token_id``. Left padding shifts a row's positions by a constant; both backbones use rotary
positions, so attention scores are unchanged and batched generation equals unbatched generation
(tested). ``model`` may be a peft wrapper: ``lmm_apa.models.adapters.base_model`` unwraps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

IGNORE_INDEX = -100
CONTROL_TOKENS = ("<|APA|>", "<|MDD|>")


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
    # LoRA goes on ``lora_target_modules`` inside the language model only: modules whose qualified
    # name starts with this prefix + a layer index (the audio encoder has modules of the same names).
    lora_layers_prefix: str = ""
    end_of_turn: str = ""  # appended to every target: the token that ends the assistant turn
    processor: Any = None  # the transformers processor when it can be built here (None for phi4-mm on CPU)
    audio_token: str = ""  # the placeholder the model replaces with audio embeddings
    adapter_method: str | None = None  # set by apply_adapter: "lora" / "unfreeze" / "full"
    own_lora_merged: bool = False  # apply_adapter merged the shipped LoRA into the base weights
    own_lora: str | None = None  # name of a LoRA the checkpoint ships and load_backbone loaded (phi4: "speech-lora")

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end generation: the end-of-turn token and the tokenizer's eos (deduplicated)."""
        ids = [self.tokenizer.convert_tokens_to_ids(self.end_of_turn), self.tokenizer.eos_token_id]
        return list(dict.fromkeys(i for i in ids if i is not None))

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_token_ids[-1]

    def build_batch(
        self,
        audios: Sequence[np.ndarray],
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
    ) -> dict:
        """Tensors for one batch, ready for ``model(**batch)`` / ``model.generate(**batch)``.

        ``audios``: 1-D float waveforms at ``sampling_rate``; ``prompts``: the user-turn text (a
        leading control token included); ``targets``: the assistant answers (training). Every row is
        the chat-template prompt with the audio placeholder expanded to one token per audio frame
        (exactly as the transformers processor does), then, with targets, answer + ``end_of_turn``.
        Prompt and answer are tokenized separately, so the prompt tokens are the same ones generation
        starts from. Right padding with targets, left padding without. Tensors stay on the CPU (move
        them with ``{k: v.to(device) ...}``); features are float32, the model casts them.
        """
        check_batch_inputs(audios, prompts, targets, self.sampling_rate, self.max_audio_seconds)
        audio_inputs, n_audio_tokens = self.audio_inputs(audios)
        texts = [
            self.prompt_text(p).replace(self.audio_token, self.audio_token * n, 1)
            for p, n in zip(prompts, n_audio_tokens)
        ]
        prompt_ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        answer_ids = None
        if targets is not None:
            answer_ids = [
                self.tokenizer(t + self.end_of_turn, add_special_tokens=False)["input_ids"] for t in targets
            ]
        batch = pad_rows(prompt_ids, answer_ids, self.pad_token_id, "right" if targets is not None else "left")
        batch.update(audio_inputs)
        return batch

    # ---- per backbone -------------------------------------------------------------------------
    def prompt_text(self, prompt: str) -> str:
        """The chat-template text of one user turn holding ONE ``audio_token`` and the prompt, up to
        and including the assistant header (generation prompt)."""
        raise NotImplementedError

    def audio_inputs(self, audios: Sequence[np.ndarray]) -> tuple[dict, list[int]]:
        """Feature-extractor tensors for the model, and the number of audio tokens of each clip."""
        raise NotImplementedError


def check_batch_inputs(audios, prompts, targets, sampling_rate: int, max_audio_seconds: float) -> None:
    """Clear errors (naming the row) before anything reaches the feature extractor."""
    if len(audios) != len(prompts) or (targets is not None and len(targets) != len(prompts)):
        raise ValueError(
            f"build_batch: {len(audios)} audios, {len(prompts)} prompts"
            + (f", {len(targets)} targets" if targets is not None else "")
            + ": the counts must match"
        )
    if not audios:
        raise ValueError("build_batch: empty batch")
    for i, a in enumerate(audios):
        a = np.asarray(a)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"build_batch: audio {i} must be a non-empty 1-D waveform, got shape {a.shape}")
        seconds = a.size / sampling_rate
        if seconds > max_audio_seconds:
            raise ValueError(
                f"build_batch: audio {i} lasts {seconds:.1f} s, over this backbone's limit of "
                f"{max_audio_seconds:g} s (split or trim it)"
            )


def pad_rows(
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[list[int]] | None,
    pad_id: int,
    side: str,
) -> dict:
    """input_ids / attention_mask (/ labels) tensors from per-row token lists.

    Labels are the answer tokens only (prompt and padding are IGNORE_INDEX). ``side`` is "right"
    for training and "left" for generation (every row's last real token at the end)."""
    import torch

    rows = [p + (answer_ids[i] if answer_ids is not None else []) for i, p in enumerate(prompt_ids)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        start = 0 if side == "right" else width - len(row)
        ids[i, start : start + len(row)] = torch.tensor(row)
        mask[i, start : start + len(row)] = 1
        if answer_ids is not None:
            n_prompt = len(prompt_ids[i])
            labels[i, start + n_prompt : start + len(row)] = torch.tensor(answer_ids[i])
    out = {"input_ids": ids, "attention_mask": mask}
    if answer_ids is not None:
        out["labels"] = labels
    return out


def split_control_token(prompt: str) -> tuple[str, str]:
    """("<|APA|>", rest) when the prompt starts with a seed-002 control token, else ("", prompt)."""
    for token in CONTROL_TOKENS:
        if prompt.startswith(token):
            return token, prompt[len(token) :]
    return "", prompt
