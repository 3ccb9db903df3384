"""``logits_only_at``: the output head on chosen positions only gives exactly those rows of the full
logits, for both backbones (Qwen2-Audio has no ``logits_to_keep`` of its own), and the hook is gone
afterwards, also after an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmm_apa.models.logits import logits_only_at


@pytest.mark.parametrize("arch", ["tiny_qwen2_audio", "tiny_phi4_mm"])
def test_kept_positions_equal_full_logits(arch, request):
    from lmm_apa.models.loading import load_model

    bb = load_model(str(request.getfixturevalue(arch)), device="cpu")
    t = np.arange(12000) / 16000
    audios = [(0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), np.zeros(8000, dtype=np.float32)]
    batch = bb.build_batch(audios, ["Score it.", "Transcribe what was said, please."])
    with torch.no_grad():
        full = bb.model(**batch).logits
        with logits_only_at(bb.model, slice(-1, None)):
            last = bb.model(**batch).logits
        with logits_only_at(bb.model, [0, 3, -2]):
            picked = bb.model(**batch).logits
    n = full.shape[1]
    assert last.shape[1] == 1 and picked.shape[1] == 3
    torch.testing.assert_close(last[:, 0], full[:, -1])
    torch.testing.assert_close(picked, full[:, [0, 3, n - 2]])
    with torch.no_grad():  # the hook was removed
        assert bb.model(**batch).logits.shape[1] == n
        with pytest.raises(RuntimeError, match="boom"):
            with logits_only_at(bb.model, [0]):
                raise RuntimeError("boom")
        assert bb.model(**batch).logits.shape[1] == n
