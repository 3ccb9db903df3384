"""Free generation, the papers' way: greedy ``model.generate`` on a left-padded batch, answer parsed
afterwards by the task's parser (which may find it malformed; that is counted, never hidden).

Also the backbone-level entry points both decoders share: move a ``build_batch`` output to the
model's device, and decode one batch either way (``decode_batch``), returning per-row records that
``predict``, ``assess``, ``serve`` and the benchmark all use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lmm_apa.models.logits import logits_only_at
from lmm_apa.prompts.template import Template, render

DECODINGS = ("free", "constrained")


@dataclass
class Decoded:
    """One row's answer, whichever decoder produced it."""

    output: str
    decoding: str
    values: dict | None = None  # constrained: argmax per slot key
    expected: dict | None = None  # constrained: expectation per slot key
    probs: dict | None = None  # constrained: distribution over the slot's choices
    new_tokens: int = 0


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def max_new_tokens_for(tokenizer, template: Template | None, fallback_text: str = "") -> int:
    """A generation budget: the template's token length with every score at its longest ("10"),
    plus slack for a model that strays; for answers without a template (mdd), from a text of the
    same size (words + phones)."""
    if template is not None:
        values = {s.key: max(s.choices, key=lambda c: len(str(c))) for s in template.slots}
        n = len(tokenizer(render(template, values), add_special_tokens=False)["input_ids"])
    else:
        n = len(tokenizer(fallback_text, add_special_tokens=False)["input_ids"]) + 24
    return int(n * 1.25) + 8


@torch.no_grad()
def generate_free(backbone, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int) -> list[Decoded]:
    """Greedy generation for a batch; the answer text stops at the end-of-turn token."""
    model = backbone.model
    batch = to_device(backbone.build_batch(list(audios), list(prompts)), model_device(model))
    eos = backbone.eos_token_ids
    with logits_only_at(model, slice(-1, None)):  # generate reads the last position only
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=eos, pad_token_id=backbone.pad_token_id,
        )
    new = out[:, batch["input_ids"].shape[1]:].tolist()
    decoded = []
    for row in new:
        n = next((i for i, t in enumerate(row) if t in eos), len(row))
        text = backbone.tokenizer.decode(row[:n], skip_special_tokens=True)
        decoded.append(Decoded(output=text, decoding="free", new_tokens=min(n + 1, len(row))))
    return decoded


TREE_TOKENS_PER_SLOT = 14  # query tokens one 0-10 slot adds to a forward: ~3 literal + 11 candidate-tree nodes
# query tokens per forward (whole batch) that cost about what one does. CPU, measured on the tiny
# model (benchmarks/RESULTS.md): at batch 1 a look-ahead of 2 took 2.0 -> 1.2 s once the model was
# trained (its guesses hold: 2.75 slots per forward), no gain on a random model; at batch 16, none.
LOOKAHEAD_TOKEN_BUDGET = {"cpu": 48, "accelerator": 256}


def default_lookahead(device, batch_size: int) -> int:
    """Speculative slots per constrained forward when the caller does not say.

    A forward costs about the same whatever its query tokens up to a budget: a GPU running a 7B
    model is bound by reading the weights up to a few hundred tokens per forward; on a CPU each
    token soon costs attention over the whole prompt (measured on the tiny model: batch 1 gains,
    batch 16 does not, benchmarks/RESULTS.md). So the look-ahead fills the budget: each slot adds
    ~``TREE_TOKENS_PER_SLOT`` query tokens per row. The accelerator budget is an estimate (not yet
    measured on a GPU): pass ``--lookahead`` to override."""
    kind = "cpu" if torch.device(device).type == "cpu" else "accelerator"
    slots = LOOKAHEAD_TOKEN_BUDGET[kind] // (TREE_TOKENS_PER_SLOT * max(1, batch_size))
    return max(0, min(4, slots - 1))


def decode_batch(
    backbone,
    audios: Sequence[np.ndarray],
    prompts: Sequence[str],
    templates: Sequence[Template | None],
    decoding: str,
    fallback_texts: Sequence[str] | None = None,
    lookahead: int | None = None,
) -> list[Decoded]:
    """One batch through the chosen decoder. ``constrained`` needs a template for every row (the
    caller sends template-less rows, i.e. mdd, to ``free``). ``lookahead``: speculative slots per
    forward of the constrained decoder (``None``: ``default_lookahead`` for this device and batch)."""
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    if decoding == "free":
        budget = max(
            max_new_tokens_for(backbone.tokenizer, t, (fallback_texts or [""] * len(templates))[i])
            for i, t in enumerate(templates)
        )
        return generate_free(backbone, audios, prompts, budget)
    from lmm_apa.infer.constrained import answer_terminator_id, constrained_decode

    if any(t is None for t in templates):
        raise ValueError("constrained decoding needs a score template for every row (mdd has none: use free)")
    model = backbone.model
    batch = to_device(backbone.build_batch(list(audios), list(prompts)), model_device(model))
    if lookahead is None:
        lookahead = default_lookahead(model_device(model), len(templates))
    results = constrained_decode(
        model, backbone.tokenizer, batch, list(templates), answer_terminator_id(backbone), pad_id=backbone.pad_token_id,
        lookahead=lookahead,
    )
    return [
        Decoded(output=r.text, decoding="constrained", values=r.values, expected=r.expected, probs=r.probs,
                new_tokens=len(r.token_ids))
        for r in results
    ]
