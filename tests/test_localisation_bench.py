"""The localisation benchmark's own parts (benchmarks/bench_localisation.py): what a synthetic speaker
said (the CTC targets), greedy CTC decoding, the phone-score slots the attention figures read, and an
encoder CTC stage that learns. The benchmark's runs themselves are in benchmarks/RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_localisation  # noqa: E402


def test_ctc_targets_are_what_the_synthetic_speakers_said(small_corpus):
    """The targets (the labels' ``said_phones``, as `mdd` transcribes them) equal what the corpus
    writer injected: substitutions as the phone said, deleted phones and deleted words left out."""
    import json

    from lmm_apa.data.corpus import load_corpus

    injections = json.loads((small_corpus / "resource" / "synthetic-injections.json").read_text())
    states = {s for plan in injections.values() for w in plan["words"] for s in w["states"]}
    assert {"substituted", "deleted", "distorted"} <= states and any(
        w["deleted"] for plan in injections.values() for w in plan["words"])  # every case occurs
    for utt in load_corpus(small_corpus):
        said = [p.rstrip("012") for w in injections[utt.id]["words"] if not w["deleted"]
                for p, state in zip(w["said"], w["states"]) if state != "deleted"]
        assert bench_localisation.EncoderCTC.said(utt) == said, utt.id


@pytest.mark.parametrize("ids, phones", [([0, 3, 3, 0, 3, 5, 5, 0], [3, 3, 5]), ([0, 0], []), ([2], [2])])
def test_greedy_ctc_merges_repeats_and_drops_blanks(ids, phones):
    assert bench_localisation._collapse(ids) == phones


@pytest.fixture(scope="module")
def small_corpus(synth_corpus) -> Path:
    """The session's synthetic corpus (300 readings: 240 train / 60 held-out)."""
    return synth_corpus


@pytest.fixture(scope="module")
def tiny_6s(tmp_path_factory) -> str:
    """The recipes' tiny Qwen2-Audio model (a 6 s encoder window, lmm_apa.demo.TINY_AUDIO_SECONDS)."""
    from lmm_apa.demo import TINY_AUDIO_SECONDS
    from lmm_apa.models.tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("loc-model") / "tiny", arch="qwen2-audio", seed=0,
                               audio_seconds=TINY_AUDIO_SECONDS))


def test_phone_slots_are_one_per_canonical_phone(tiny_6s, small_corpus):
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.models.backbones import load_backbone
    from lmm_apa.prompts.tasks import TASKS

    backbone = load_backbone(tiny_6s)
    utt = next(iter(load_corpus(small_corpus, split="test").utterances))
    batch = backbone.build_batch([[0.0] * 16000], [TASKS["full"].instruction(utt)], [TASKS["full"].target(utt)])
    slots = bench_localisation._phone_slots(backbone.tokenizer, batch["input_ids"][0], batch["labels"][0])
    assert len(slots) == sum(len(w.phones) for w in utt.words)
    # each slot is the '/' right after its phone, and the score follows it
    first = backbone.tokenizer.decode(batch["input_ids"][0][slots[0] - 2:slots[0] + 2])
    assert f"{utt.words[0].phones[0]}/" in first.replace(" ", "")
    no_phones = backbone.build_batch([[0.0] * 16000], ["x"], ["Sentence Scores: 1 2 3 4 5"])
    with pytest.raises(ValueError, match="Phone Scores"):
        bench_localisation._phone_slots(backbone.tokenizer, no_phones["input_ids"][0], no_phones["labels"][0])


def test_ctc_stage_runs_the_encoder_as_the_model_does(tiny_6s, small_corpus):
    """Same audio tokens as the full model's forward hands its projector (padding masked alike)."""
    import torch

    from lmm_apa.models.backbones import load_backbone

    backbone = load_backbone(tiny_6s)
    stage = bench_localisation.EncoderCTC(backbone, small_corpus)
    utts = stage.test[:3]
    seen = []
    hook = backbone.model.model.multi_modal_projector.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    batch = backbone.build_batch([stage.wavs[u.id] for u in utts], ["x"] * 3)
    with torch.no_grad():
        backbone.model(**batch)
        hidden, n_tokens = stage._encode(utts)
    hook.remove()
    for row, n in enumerate(n_tokens):
        assert torch.allclose(hidden[row, :n], seen[0][row, :n], atol=1e-5)


def test_encoder_ctc_stage_learns_to_recognise_phones(tiny_6s, small_corpus):
    import torch

    from lmm_apa.models.backbones import load_backbone

    torch.manual_seed(0)
    stage = bench_localisation.EncoderCTC(load_backbone(tiny_6s), small_corpus, lr=5e-3)
    conv_before = stage.encoder.conv1.weight.detach().clone()
    assert stage.per() >= 0.95  # untrained: (almost) nothing recognised
    pers = stage.fit(epochs=4, seed=0)
    assert len(pers) == 4 and pers[-1] < 0.75, pers
    assert not torch.equal(conv_before, stage.encoder.conv1.weight), "the encoder itself must learn, not only the head"
    with pytest.raises(ValueError, match="epochs >= 1"):
        stage.fit(epochs=0)


def test_probe_trains_the_head_only(tiny_6s, small_corpus):
    import torch

    from lmm_apa.models.backbones import load_backbone

    probe = bench_localisation.EncoderCTC(load_backbone(tiny_6s), small_corpus, train_encoder=False)
    probe.train, probe.test = probe.train[:16], probe.test[:4]  # one step is enough to see what moves
    encoder_before = [p.detach().clone() for p in probe.encoder.parameters()]
    head_before = probe.head.weight.detach().clone()
    probe.fit(epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, probe.encoder.parameters()))
    assert not torch.equal(head_before, probe.head.weight)


def test_attention_figures_are_shares_and_correlations(tiny_6s, small_corpus):
    figures = bench_localisation.attention_at_phone_slots(tiny_6s, None, small_corpus, n=3)
    assert set(figures) == {"layer0", "layer1"}  # the tiny language model's two layers
    for layer in figures.values():
        assert 0.0 < layer["audio_mass"] < 1.0
        assert layer["order_rho"] is None or -1.0 <= layer["order_rho"] <= 1.0
