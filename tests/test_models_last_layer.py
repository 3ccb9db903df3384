"""``last_layer_only_at``: the last decoder layer run only at the answer positions gives the trainer
the same loss and the same gradients as the whole layer, for both backbones, with the trainer's
mask-free batches, with a 4-D mask (a batch with a hole), and under gradient checkpointing; it really
runs fewer positions; it stands aside where it does not apply (a KV cache) and is gone afterwards,
also after an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmm_apa.models.last_layer import decoder_layers, kept_index, last_layer_only_at
from lmm_apa.models.logits import logits_only_at
from lmm_apa.train.losses import answer_positions, answer_token_nll
from lmm_apa.train.trainer import answer_logits, without_right_padding_mask


def _trainable(arch_fixture, request):
    from lmm_apa.models.loading import load_model

    bb = load_model(str(request.getfixturevalue(arch_fixture)), device="cpu")
    bb.model.train()
    for p in bb.model.parameters():
        p.requires_grad_(True)
    return bb


def _batch(bb):
    t = np.arange(16000) / 16000
    audios = [(0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), (0.05 * np.sin(2 * np.pi * 440 * t[:9000])).astype(np.float32),
              np.zeros(12000, dtype=np.float32)]
    batch = bb.build_batch(audios, ["Score the accuracy.", "Transcribe what was said, please.", "Score it."],
                           ["Accuracy: 7", "the cat sat on the mat", "Accuracy: 10 Fluency: 9 Prosodic: 8"])
    return batch, batch.pop("labels")


def _loss_and_grads(model, forward):
    model.zero_grad(set_to_none=True)
    loss = forward()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    scale = max(g.abs().max() for g in grads_a.values())
    for name in grads_a:  # relative to the largest gradient: some (e.g. a key bias) are ~0 in exact arithmetic
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=0, atol=1e-5 * float(scale), msg=name)


def _whole_layer(model, batch, labels):
    """The trainer's forward without the trim: head at the answer positions, every layer whole."""
    with logits_only_at(model, answer_positions(labels)):
        out = model(**without_right_padding_mask(batch), use_cache=False)
    return answer_token_nll(out.logits, labels, reduction="sum")


def _rows_seen_by_last_mlp(model):
    seen = []
    handle = decoder_layers(model)[-1].mlp.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[:2]))
    return seen, handle


def _trainer_run(model, batch, labels):
    """(loss and gradients of the trainer's forward, the row shapes the last layer's MLP saw)."""
    seen, handle = _rows_seen_by_last_mlp(model)
    try:
        return _loss_and_grads(model, lambda: answer_token_nll(answer_logits(model, batch, labels).logits, labels,
                                                               reduction="sum")), seen
    finally:
        handle.remove()


@pytest.mark.parametrize("arch", ["tiny_qwen2_audio", "tiny_phi4_mm"])
def test_trainer_loss_and_gradients_equal_the_whole_last_layer(arch, request):
    bb = _trainable(arch, request)
    batch, labels = _batch(bb)
    whole = _loss_and_grads(bb.model, lambda: _whole_layer(bb.model, batch, labels))
    trimmed, seen = _trainer_run(bb.model, batch, labels)
    _assert_same(whole, trimmed)
    most_answers = int(answer_positions(labels).sum(1).max())
    assert [tuple(rows) for rows in seen] == [(3, most_answers)] and most_answers < labels.shape[1]  # the answer rows only
    assert "forward" not in decoder_layers(bb.model)[-1].__dict__  # the class's forward again


def test_a_batch_with_a_hole_takes_the_rows_of_its_4d_mask(request):
    bb = _trainable("tiny_qwen2_audio", request)
    batch, labels = _batch(bb)
    mask = batch["attention_mask"].clone()
    mask[0, 3] = 0  # a hole: the batch keeps its mask, and the model builds a 4-D one from it
    batch["attention_mask"] = mask
    keep = answer_positions(labels)

    def run(trim: bool):
        with logits_only_at(bb.model, keep):
            if not trim:
                return bb.model(**batch, use_cache=False).logits
            with last_layer_only_at(bb.model, keep):
                return bb.model(**batch, use_cache=False).logits

    with torch.no_grad():
        whole, trimmed = run(False), run(True)
        mask[0, 3] = 1
        unholed = run(True)
    torch.testing.assert_close(trimmed, whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unholed, whole, atol=1e-4)  # the hole mattered, so the 4-D rows were read


def test_gradient_checkpointing_gives_the_same_gradients(request):
    bb = _trainable("tiny_qwen2_audio", request)
    batch, labels = _batch(bb)
    whole = _loss_and_grads(bb.model, lambda: _whole_layer(bb.model, batch, labels))
    bb.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert decoder_layers(bb.model)[-1].gradient_checkpointing
    trimmed, seen = _trainer_run(bb.model, batch, labels)
    _assert_same(whole, trimmed)
    n = int(answer_positions(labels).sum(1).max())
    assert [tuple(rows) for rows in seen] == [(3, n), (3, n)]  # run trimmed, and recomputed trimmed in the backward


def test_asking_for_hidden_states_runs_every_layer_whole(request):
    bb = _trainable("tiny_qwen2_audio", request)
    batch, labels = _batch(bb)
    seen, handle = _rows_seen_by_last_mlp(bb.model)
    with torch.no_grad():
        out = answer_logits(bb.model, batch, labels, output_hidden_states=True)
    handle.remove()
    assert [tuple(rows) for rows in seen] == [tuple(labels.shape)] and len(out.hidden_states) == 3


def test_a_kv_cache_runs_the_whole_layer_and_the_forward_is_restored(request):
    from lmm_apa.models.loading import load_model

    bb = load_model(str(request.getfixturevalue("tiny_phi4_mm")), device="cpu")
    batch, labels = _batch(bb)
    keep = answer_positions(labels)
    layer = decoder_layers(bb.model)[-1]
    with torch.no_grad():
        plain = bb.model(**batch, use_cache=True).logits
        with last_layer_only_at(bb.model, keep):
            cached = bb.model(**batch, use_cache=True).logits  # a cache: the layer's own forward, every row
        torch.testing.assert_close(cached, plain)
        with pytest.raises(RuntimeError, match="boom"):
            with last_layer_only_at(bb.model, keep):
                assert "forward" in layer.__dict__
                raise RuntimeError("boom")
    assert "forward" not in layer.__dict__


def test_kept_index_lists_each_rows_positions_and_pads_with_position_0():
    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert kept_index(mask).tolist() == [[1, 3, 4], [2, 0, 0], [0, 0, 0]]
