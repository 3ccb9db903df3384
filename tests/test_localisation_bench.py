"""The localisation benchmark's own parts (benchmarks/bench_localisation.py): what a synthetic speaker
said (the CTC targets), greedy CTC decoding, the phone-score slots the attention figures read, and an
encoder CTC stage that learns. The benchmark's runs themselves are in benchmarks/RESULTS.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_localisation  # noqa: E402


def test_said_phones_follow_the_injections():
    injections = {"u": {"words": [
        {"said": ["TH", "IH1", "NG", "K"], "states": ["substituted", "ok", "deleted", "distorted"], "deleted": False},
        {"said": ["AH0"], "states": ["ok"], "deleted": True},  # a word left out: nothing said
        {"said": ["S", "IY1"], "states": ["ok", "ok"], "deleted": False},
    ]}}
    assert bench_localisation.said_phones(injections, "u") == ["TH", "IH", "K", "S", "IY"]


@pytest.mark.parametrize("ids, phones", [([0, 3, 3, 0, 3, 5, 5, 0], [3, 3, 5]), ([0, 0], []), ([2], [2])])
def test_greedy_ctc_merges_repeats_and_drops_blanks(ids, phones):
    assert bench_localisation._collapse(ids) == phones


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("loc") / "corpus"
    write_synthetic_corpus(out, n_utterances=40, seed=4, test_fraction=0.2)
    return out


def test_phone_slots_are_one_per_canonical_phone(tiny_qwen2_audio, small_corpus):
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.models.backbones import load_backbone
    from lmm_apa.prompts.tasks import TASKS

    backbone = load_backbone(tiny_qwen2_audio)
    utt = next(iter(load_corpus(small_corpus, split="test").utterances))
    batch = backbone.build_batch([[0.0] * 16000], [TASKS["full"].instruction(utt)], [TASKS["full"].target(utt)])
    slots = bench_localisation._phone_slots(backbone.tokenizer, batch["input_ids"][0], batch["labels"][0])
    assert len(slots) == sum(len(w.phones) for w in utt.words)
    # each slot is the '/' right after its phone, and the score follows it
    first = backbone.tokenizer.decode(batch["input_ids"][0][slots[0] - 2:slots[0] + 2])
    assert f"{utt.words[0].phones[0]}/" in first.replace(" ", "")


def test_encoder_ctc_stage_learns(tiny_qwen2_audio, small_corpus):
    import torch

    from lmm_apa.models.backbones import load_backbone

    torch.manual_seed(0)
    stage = bench_localisation.EncoderCTC(load_backbone(tiny_qwen2_audio), small_corpus, lr=3e-3)
    batch = stage.train[:16]
    conv_before = stage.encoder.conv1.weight.detach().clone()
    with torch.no_grad():
        before = float(stage._loss(batch))
    pers = stage.fit(epochs=4, seed=0)
    with torch.no_grad():
        after = float(stage._loss(batch))
    assert len(pers) == 4 and all(0.0 <= p <= 2.0 for p in pers)
    assert after < 0.7 * before, (before, after)
    assert not torch.equal(conv_before, stage.encoder.conv1.weight), "the encoder itself must learn, not only the head"
    injections = json.loads((small_corpus / "resource" / "synthetic-injections.json").read_text())
    assert set(stage.phones) <= {p for u in injections for w in injections[u]["words"] for p in
                                 (x.rstrip("012") for x in w["said"])}
