"""Compute the output head only at the positions a caller reads.

Why: ``Qwen2AudioForConditionalGeneration.forward`` has no ``logits_to_keep``; it applies the LM head
to every position. That wastes work in both directions of the pipeline:

- decoding: a prefill of 16 SO762 prompts (~800 positions each) materialises 16 x 800 x 152k logits
  (3.9 GB in bf16 for Qwen2-Audio-7B) of which a decoder reads one row each;
- training: the loss reads only the positions that predict an answer token (~170 of ~770 for the
  `full` task, ~6 for a single-score task), yet the head (4096 x 156k for the 7B model) and its
  backward ran on all of them, and the float32 logits of a 800-position row are 0.5 GB.

A forward pre-hook on the model's output embeddings selects the hidden states first, so the head runs
on the kept positions only. It works for any transformers causal LM, peft- or DDP-wrapped or not, for
``generate`` (which reads ``logits[:, -1]`` only), the constrained decoder and the trainer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch


def _unwrap(model):
    """The module that owns the output head: DDP / accelerate wrappers keep it under ``.module``."""
    while not hasattr(model, "get_output_embeddings") and hasattr(model, "module"):
        model = model.module
    return model


@contextmanager
def logits_only_at(model, positions: Sequence[int] | slice | torch.Tensor):
    """Within the block, the model's logits cover the kept positions only.

    ``positions``:
    - a list of indices (negative allowed) or a slice: ``logits[:, j]`` is the row of sequence
      position ``positions[j]`` for every batch row;
    - a boolean ``(batch, time)`` tensor: the kept positions of all rows are packed in row-major order
      into ``logits`` of shape ``(1, n_kept, vocab)`` (what the training losses read, see
      ``lmm_apa.train.losses.answer_positions``).

    The hook is removed on exit, also on error."""
    head = _unwrap(model).get_output_embeddings()
    if head is None:  # pragma: no cover - every causal LM here has one
        yield
        return
    if isinstance(positions, torch.Tensor):
        if positions.dtype != torch.bool or positions.dim() != 2:
            raise ValueError(f"logits_only_at: a tensor of positions must be a (batch, time) bool mask, got {positions.dtype} {tuple(positions.shape)}")
        mask = positions
    else:
        mask = None
        index = positions if isinstance(positions, slice) else list(positions)

    def keep(_module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("input")
        if mask is not None:
            if hidden.shape[:2] != mask.shape:
                raise ValueError(f"logits_only_at: mask {tuple(mask.shape)} does not match the hidden states {tuple(hidden.shape[:2])}")
            hidden = hidden[mask.to(hidden.device)].unsqueeze(0)
        elif isinstance(index, slice):
            hidden = hidden[:, index]
        else:
            hidden = hidden.index_select(1, torch.tensor(index, device=hidden.device) % hidden.shape[1])
        return (hidden, *args[1:]), kwargs

    handle = head.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
