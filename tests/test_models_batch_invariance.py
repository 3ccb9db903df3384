"""A clip's log-probabilities must not depend on the rest of its batch (both backbones).

Greedy tokens hide small shifts, so these tests compare log-probabilities: the teacher-forced answer
tokens (right padding, as in training), the next-token distribution after the prompt (left padding,
as in decoding), and a single clip whose features are zero-padded with a mask. Tolerance 1e-4: a
score read from the answer distribution moves by far less than its last printed digit.
"""

import numpy as np
import pytest
import torch

from lmm_apa.models.backbones import IGNORE_INDEX, load_backbone

torch.set_num_threads(2)
TOL = 1e-4


def _clips():
    """A shorter and a longer clip (different audio-token counts on both backbones)."""
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (2.7, 4.1)]


PROMPTS = ["<|APA|>Rate.", "Rate the pronunciation of this recording, please."]
TARGETS = ["8 9 9", "10 10 7"]


@pytest.fixture(params=["qwen2-audio", "phi4-mm"])
def backbone(request, tiny_qwen2_audio, tiny_phi4_mm):
    return load_backbone({"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[request.param])


def _answer_logprobs(model, batch) -> list[torch.Tensor]:
    """Per row, the log-probability of each answer token given everything before it."""
    with torch.no_grad():
        logp = model(**batch).logits.float().log_softmax(-1)
    rows = []
    for i, labels in enumerate(batch["labels"]):
        pos = (labels != IGNORE_INDEX).nonzero()[:, 0]
        rows.append(logp[i, pos - 1].gather(-1, labels[pos, None])[:, 0])
    return rows


def _next_token_logprobs(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits[:, -1].float().log_softmax(-1)


def test_answer_logprobs_batched_equal_alone(backbone):
    audios = _clips()
    together = _answer_logprobs(backbone.model, backbone.build_batch(audios, PROMPTS, TARGETS))
    for i in range(len(audios)):
        alone = _answer_logprobs(backbone.model, backbone.build_batch(audios[i:i + 1], PROMPTS[i:i + 1], TARGETS[i:i + 1]))
        gap = (together[i] - alone[0]).abs().max().item()
        assert gap < TOL, f"{backbone.arch}: clip {i} answer log-probs move by {gap:.2e} beside the other clip"


def test_next_token_logprobs_left_padded_equal_alone(backbone):
    audios = _clips()[::-1]  # the shorter clip second this time
    together = _next_token_logprobs(backbone.model, backbone.build_batch(audios, PROMPTS))
    for i in range(len(audios)):
        alone = _next_token_logprobs(backbone.model, backbone.build_batch(audios[i:i + 1], PROMPTS[i:i + 1]))
        gap = (together[i] - alone[0]).abs().max().item()
        assert gap < TOL, f"{backbone.arch}: clip {i} next-token log-probs move by {gap:.2e} beside the other clip"


def test_phi4_single_clip_zero_padded_with_mask_equals_alone(tiny_phi4_mm):
    """Features padded past the clip's end (as a longer batch-mate would pad them), with the
    feature extractor's ``audio_attention_mask``, give the clip-alone result."""
    b = load_backbone(tiny_phi4_mm)
    clip = _clips()[0]
    batch = b.build_batch([clip], PROMPTS[:1], TARGETS[:1])
    feats = batch["audio_input_features"]
    n = feats.shape[1]
    padded = dict(batch, audio_input_features=torch.cat([feats, torch.zeros(1, 200, feats.shape[2])], 1),
                  audio_attention_mask=torch.arange(n + 200)[None, :] < n)
    gap = (_answer_logprobs(b.model, padded)[0] - _answer_logprobs(b.model, batch)[0]).abs().max().item()
    assert gap < TOL, f"zero-padded clip moves by {gap:.2e}"


def test_constrained_candidate_logprobs_batched_equal_alone(backbone):
    """The symptom as a user meets it: the constrained decoder's per-candidate probabilities of a
    clip decoded beside a longer one (every slot's whole distribution, log scale)."""
    from lmm_apa.infer.generate import decode_batch
    from lmm_apa.prompts.template import Template

    template = (Template().literal("Accuracy: ").slot(("sentence", "accuracy", None))
                .literal(", fluency: ").slot(("sentence", "fluency", None)))
    audios = _clips()

    def logprobs(rows):
        got = decode_batch(backbone, [audios[i] for i in rows], [PROMPTS[i] for i in rows], [template] * len(rows),
                           "constrained", lookahead=0)
        return [{k: torch.tensor(list(d.values()) if isinstance(d, dict) else list(d)).log() for k, d in g.probs.items()} for g in got]

    together = logprobs([0, 1])
    for i in range(2):
        alone = logprobs([i])[0]
        assert alone.keys() == together[i].keys()
        gap = max((together[i][k] - alone[k]).abs().max().item() for k in alone)
        assert gap < TOL, f"{backbone.arch}: clip {i} candidate log-probs move by {gap:.2e} beside the other clip"
