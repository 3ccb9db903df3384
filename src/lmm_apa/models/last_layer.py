"""Run the language model's last decoder layer only at the positions a caller reads.

Why: in training, the losses read the logits of the answer positions only (``logits_only_at`` already
applies the output head there alone). The last decoder layer's output feeds nothing but that head,
so at every other position its query projection, attention, output projection and MLP are wasted
work; only its keys and values are needed everywhere (the kept positions attend to them). Running
the layer's attention, output projection and MLP at the kept positions (its fused or separate
query projection still runs everywhere) gives the same answer-position hidden states, so the same
loss and the same gradients (up to floating-point summation order; with dropout in LoRA or Phi-4's
residual dropout, the same in distribution: other random draws), for less compute:

- the tiny models of the suite and the demo (2 layers, ~500-750-position rows, ~6-170 answer
  tokens): about half the language model's attention and most of one layer's matrix products
  (``benchmarks/bench_train_head.py`` has the step times);
- a real 7 B backbone (32 layers): at most 1/32 of the language model's compute, no more.

Every other position of the layer's output is its input passed through unchanged (position 0, where
shorter rows park their padding slots, gets that position's own output): nothing reads those
positions (the head is applied at the kept positions only), so their gradient is zero, as before.

Written for the pre-norm decoder layer both backbones' language models use (transformers' Qwen2 and
Phi-4-multimodal layers: ``input_layernorm`` -> ``self_attn`` -> residual -> ``post_attention_layernorm``
-> ``mlp`` -> residual; Phi-4's residual dropouts honoured). The projections are the layer's own
modules, so a peft LoRA on them is applied as usual; the rotary embedding is the model file's own
``apply_rotary_pos_emb``; gradient checkpointing recomputes the trimmed layer as it would the whole
one. Anything else (a KV cache, sliding-window attention, attention dropout in training, a mask
other than none or 4-D -- flash-attention's 2-D one, flex's block mask --, a layer placed by an
accelerate device map, an unknown layer) runs the layer's own forward unchanged; ``answer_logits``
does not trim when hidden states or attentions are asked for.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F

from lmm_apa.models.compat import transformers_model


def decoder_layers(model):
    """The language model's decoder layers (a ``ModuleList``), through peft / DDP wrappers."""
    model = transformers_model(model)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    return layers if isinstance(layers, torch.nn.ModuleList) and len(layers) else None


def _is_prenorm_layer(layer) -> bool:
    attn = getattr(layer, "self_attn", None)
    return (all(hasattr(layer, name) for name in ("input_layernorm", "post_attention_layernorm", "mlp"))
            and attn is not None and hasattr(attn, "o_proj") and hasattr(attn, "head_dim")
            and (hasattr(attn, "qkv_proj") or all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj"))))


def _projections(attn, normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(queries, keys, values) as ``(batch, heads, time, head_dim)``: Phi-4's fused ``qkv_proj`` or
    Qwen2's three projections."""
    heads = attn.config.num_attention_heads
    kv_heads = attn.config.num_key_value_heads
    d = attn.head_dim
    if hasattr(attn, "qkv_proj"):
        q, k, v = attn.qkv_proj(normed).split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
    else:
        q, k, v = attn.q_proj(normed), attn.k_proj(normed), attn.v_proj(normed)
    b, t = normed.shape[:2]
    return tuple(x.view(b, t, -1, d).transpose(1, 2) for x in (q, k, v))


def kept_index(mask: torch.Tensor) -> torch.Tensor:
    """``(batch, slots)``: each row's kept positions in order, padded to the longest row with
    position 0, which the caller makes sure is never kept. A padding slot computes position 0's
    output and writes it there; nothing reads it, so it adds nothing to any gradient."""
    counts = mask.sum(1)
    slots = max(int(counts.max()), 1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :slots]
    valid = torch.arange(slots, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, order, torch.zeros_like(order))


def _attention_mask(index: torch.Tensor, attention_mask, t: int) -> torch.Tensor:
    """``(batch, 1, slots, time)`` mask for the kept queries: the rows of the layer's own 4-D mask
    when it has one, else causal (a kept query at position p sees keys 0..p)."""
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
        mask = attention_mask.expand(index.shape[0], -1, -1, -1)  # a (1, 1, T, T) mask serves every row
        rows = index[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[-1])
        return mask.gather(2, rows)
    keys = torch.arange(t, device=index.device)
    return (keys[None, None, None, :] <= index[:, None, :, None])


def _kept_forward(layer, hidden: torch.Tensor, index: torch.Tensor, attention_mask, position_embeddings):
    """The layer's output at ``index`` positions, scattered into its input (others pass through)."""
    attn = layer.self_attn
    b, t, width = hidden.shape
    apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    q, k, v = _projections(attn, layer.input_layernorm(hidden))
    cos, sin = position_embeddings
    q, k = apply_rotary(q, k, cos, sin)
    q = q.gather(2, index[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1]))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=_attention_mask(index, attention_mask, t),
                                         scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1])
    out = attn.o_proj(out.transpose(1, 2).reshape(b, index.shape[1], -1))
    residual = hidden.gather(1, index[:, :, None].expand(-1, -1, width))
    h = residual + getattr(layer, "resid_attn_dropout", torch.nn.Identity())(out)
    h = h + getattr(layer, "resid_mlp_dropout", torch.nn.Identity())(layer.mlp(layer.post_attention_layernorm(h)))
    return hidden.scatter(1, index[:, :, None].expand(-1, -1, width), h)


def _applies(layer, hidden, attention_mask, kwargs) -> bool:
    attn = layer.self_attn
    window = getattr(attn.config, "sliding_window", None)
    plain_mask = attention_mask is None or (isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4)
    return (plain_mask and not hasattr(layer, "_hf_hook")  # an accelerate device map moves inputs in its hook
            and kwargs.get("past_key_values") is None and kwargs.get("cache") is None
            and kwargs.get("position_embeddings") is not None
            and not (attn.training and getattr(attn, "attention_dropout", 0.0))
            and (window is None or window >= hidden.shape[1]))


@contextmanager
def last_layer_only_at(model, mask: torch.Tensor):
    """Within the block, the last decoder layer computes its output only where ``mask``
    (``(batch, time)`` bool) is True; use together with ``logits_only_at`` on the same mask, which
    makes the head read nothing else. A model whose last layer is not the pre-norm kind this knows
    runs unchanged. The layer's own forward is restored on exit, also on error."""
    layers = decoder_layers(model)
    layer = layers[-1] if layers is not None else None
    if (layer is None or not _is_prenorm_layer(layer) or mask.dim() != 2 or not bool(mask.any())
            or bool(mask[:, 0].any())):  # position 0 is where kept_index parks its padding
        yield
        return
    original, own = layer.forward, layer.__dict__.get("forward")
    index = kept_index(mask)

    def forward(hidden_states, attention_mask=None, **kwargs):
        if hidden_states.shape[:2] != mask.shape or not _applies(layer, hidden_states, attention_mask, kwargs):
            return original(hidden_states, attention_mask=attention_mask, **kwargs)
        kept = partial(_kept_forward, layer, index=index.to(hidden_states.device), attention_mask=attention_mask,
                       position_embeddings=kwargs["position_embeddings"])
        if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
            return layer._gradient_checkpointing_func(kept, hidden_states)  # as the class's forward would
        return kept(hidden_states)

    layer.forward = forward
    try:
        yield
    finally:
        if own is None:
            del layer.forward  # the class's forward again
        else:
            layer.forward = own
