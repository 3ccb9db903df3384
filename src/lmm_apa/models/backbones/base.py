"""What the rest of the toolkit needs from a backbone, and nothing more.

Two objects per backbone:

- ``BackboneSpec`` (frozen): the facts a published checkpoint fixes, written once in the backbone's
  own module (``qwen2_audio.SPEC``, ``phi4_mm.SPEC``): audio limits and rate, audio tokens per
  second, placeholder and end-of-turn tokens, the vLLM prompt format, LoRA targets, the modules
  "Unfreeze" trains, what QLoRA leaves unquantized. Code that only needs a fact (the data pipeline's
  length limit, the trainer's length estimate, the vLLM backend) reads the spec, never a copy.
- ``Backbone``: one loaded model: the spec + the model, tokenizer, feature extractor (and processor)
  and what the loaded checkpoint says where it may differ from the published one (``audio_token``
  read from its config, ``max_audio_seconds`` from its encoder window: the tiny Qwen2-Audio takes
  15 s). Adapter state (which adapter is on the model) is not here: see ``lmm_apa.models.adapters``.

A backbone module (``qwen2_audio.py``, ``phi4_mm.py``; a third backbone is one new module registered
in ``lmm_apa.models.backbones``) subclasses ``Backbone`` with two small methods: ``prompt_text`` (its
chat template around one audio placeholder) and ``audio_inputs`` (its feature extractor, and how many
placeholder tokens each clip becomes).

``build_batch`` (shared, below) is the single place where text and audio meet the model. Training
calls it with ``targets`` (labels are the answer tokens only; prompt, audio and padding positions are
-100); inference calls it without (left padding, so generation and template-constrained decoding can
append tokens to every row). Everything else (trainer, decoders, service) is backbone-agnostic.

Notes for callers: generation should stop on ``eos_token_ids`` (end of turn + eos) and pad with
``pad_token_id``. Left padding shifts a row's positions by a constant; both backbones use rotary
positions, so attention scores are unchanged and batched generation equals unbatched generation
(tested). ``model`` may be a peft wrapper: ``lmm_apa.models.adapters.base_model`` unwraps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lmm_apa.prompts.tasks import APA_TOKEN, MDD_TOKEN

IGNORE_INDEX = -100  # label of a position the loss skips (prompt, audio, padding): torch's cross-entropy default
CONTROL_TOKENS = (APA_TOKEN, MDD_TOKEN)  # Ahn & Nam 2025's task markers, spelled by their tasks


@dataclass(frozen=True)
class BackboneSpec:
    """The published checkpoint's facts about one backbone (immutable; one per backbone module)."""

    arch: str  # registry name: "qwen2-audio", "phi4-mm"
    hub_id: str  # the published checkpoint
    model_type: str  # its config.json ``model_type``
    sampling_rate: int  # what its feature extractor takes
    # Shortest and longest clip accepted (seconds). Below 25 ms (one 400-sample analysis window)
    # Qwen2-Audio silently gets zero audio tokens and Phi-4's feature extractor fails (measured on
    # the tiny models); no word is shorter than 0.1 s, so shorter clips are refused with a clear error.
    min_audio_seconds: float
    max_audio_seconds: float
    audio_tokens_per_second: float  # audio placeholder tokens the language model sees per second
    audio_token: str  # the placeholder's name in the published tokenizer
    end_of_turn: str  # appended to every target: the token that ends the assistant turn
    lora_target_modules: tuple[str, ...]
    # LoRA goes on ``lora_target_modules`` inside the language model only: modules whose qualified
    # name starts with this prefix + a layer index (the audio encoder has modules of the same names).
    lora_layers_prefix: str
    unfreeze_modules: tuple[str, ...]  # what "Unfreeze" trains besides the LoRA: audio encoder + projector
    quantization_skip_modules: tuple[str, ...]  # left unquantized under QLoRA
    # vLLM's prompt for one audio clip: ``{control}`` (an <|APA|>/<|MDD|> control token or "") and
    # ``{prompt}`` (the rest of the instruction) are filled in by ``vllm_prompt``.
    vllm_prompt_format: str
    own_lora_subfolder: str | None = None  # a LoRA the checkpoint ships (Phi-4's speech LoRA)
    vocab_size: int = 0  # embedding rows of the published checkpoint (over-allocated past the tokenizer's ids)
    first_special_id: int = 0  # id of the published tokenizer's first special token (after the BPE ranks)

    def vllm_prompt(self, instruction: str) -> str:
        """The text vLLM gets for one clip + ``instruction`` (vLLM expands the audio placeholder)."""
        control, rest = split_control_token(instruction)
        return self.vllm_prompt_format.format(control=control, prompt=rest)

    def audio_tokens(self, seconds: float) -> int:
        """Estimated audio placeholder tokens for a clip of ``seconds`` (length-grouped batching)."""
        return int(round(seconds * self.audio_tokens_per_second))


@dataclass
class Backbone:
    spec: BackboneSpec
    model: Any  # a transformers PreTrainedModel (possibly wrapped by peft)
    tokenizer: Any
    feature_extractor: Any
    source: str = ""  # the id or path it was loaded from
    processor: Any = None  # the transformers processor when it can be built here (None for phi4-mm on CPU)
    audio_token: str = ""  # the placeholder as the loaded config names it (audio token id -> token)
    max_audio_seconds: float = 0.0  # the loaded encoder's limit (<= the spec's); 0: the spec's
    own_lora: str | None = None  # the shipped LoRA load_backbone attached (phi4: "speech-lora"), until replaced
    adapter: Any = None  # ``lmm_apa.models.adapters.AdapterState``, set by apply_adapter / load_adapter

    def __post_init__(self):
        self.audio_token = self.audio_token or self.spec.audio_token
        self.max_audio_seconds = float(self.max_audio_seconds or self.spec.max_audio_seconds)

    # The spec's facts, read through the loaded backbone (what build_batch and the adapters use).
    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def sampling_rate(self) -> int:
        return self.spec.sampling_rate

    @property
    def min_audio_seconds(self) -> float:
        return self.spec.min_audio_seconds

    @property
    def end_of_turn(self) -> str:
        return self.spec.end_of_turn

    @property
    def lora_target_modules(self) -> list[str]:
        return list(self.spec.lora_target_modules)

    @property
    def lora_layers_prefix(self) -> str:
        return self.spec.lora_layers_prefix

    @property
    def unfreeze_modules(self) -> list[str]:
        return list(self.spec.unfreeze_modules)

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
        check_batch_inputs(audios, prompts, targets, self.sampling_rate, self.max_audio_seconds,
                           self.min_audio_seconds)
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


def check_batch_inputs(audios, prompts, targets, sampling_rate: int, max_audio_seconds: float,
                       min_audio_seconds: float = 0.0) -> None:
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
        if seconds < min_audio_seconds:
            raise ValueError(
                f"build_batch: audio {i} lasts {seconds:.3f} s, under this backbone's minimum of "
                f"{min_audio_seconds:g} s (too short to hold a word)"
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
    """("<|APA|>", rest) when the prompt starts with one of Ahn & Nam 2025's control tokens, else ("", prompt)."""
    for token in CONTROL_TOKENS:
        if prompt.startswith(token):
            return token, prompt[len(token) :]
    return "", prompt
