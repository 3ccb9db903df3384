"""Compute the output head only at the positions a decoder reads.

Why: ``Qwen2AudioForConditionalGeneration.forward`` has no ``logits_to_keep``; it applies the LM head
to every position. A prefill of 16 SO762 prompts (~800 positions each) then materialises
16 x 800 x 152k logits (3.9 GB in bf16 for Qwen2-Audio-7B) of which a decoder reads one row each;
on the tiny CPU model that head is ~15 % of all decoding time. A forward pre-hook on the model's
output embeddings slices the hidden states first, so the head runs on the kept positions only; it
works for any transformers causal LM, peft-wrapped or not, and for ``generate`` (which reads
``logits[:, -1]`` only) as well as for the constrained decoder.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch


@contextmanager
def logits_only_at(model, positions: Sequence[int] | slice):
    """Within the block, ``model(...).logits[:, j]`` is the logit row of sequence position
    ``positions[j]`` (a list of indices, negative allowed, or a slice); other positions are not
    computed. The hook is removed on exit, also on error."""
    head = model.get_output_embeddings()
    if head is None:  # pragma: no cover - every causal LM here has one
        yield
        return
    index = positions if isinstance(positions, slice) else list(positions)

    def keep(_module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("input")
        if isinstance(index, slice):
            hidden = hidden[:, index]
        else:
            hidden = hidden.index_select(1, torch.tensor(index, device=hidden.device) % hidden.shape[1])
        return (hidden, *args[1:]), kwargs

    handle = head.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
