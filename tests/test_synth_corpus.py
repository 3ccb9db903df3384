"""The synthetic SO762-like corpus: layout, determinism, the score rules, audio that carries them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lmm_apa.data.corpus import load_corpus
from lmm_apa.data.synth import (
    L1_BAND_HZ,
    SAMPLE_RATE,
    SILENT_SECONDS,
    silenced_split,
    split_sizes,
    write_synthetic_corpus,
)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small") / "c"
    return out, write_synthetic_corpus(out, n_utterances=25, seed=3)


def test_layout_is_so762_and_loads_as_synthetic(small):
    out, summary = small
    for rel in ["resource/scores.json", "resource/text-phone", "resource/lexicon.txt", "resource/SYNTHETIC.md"]:
        assert (out / rel).is_file(), rel
    for split in ("train", "test"):
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "spk2age", "spk2gender"):
            assert (out / split / name).is_file(), f"{split}/{name}"
    assert summary["utterances"] == 25 and summary["train"] + summary["test"] == 25 and summary["test"] > 0
    corpus = load_corpus(out)
    assert len(corpus) == 25 and not corpus.failures
    assert all(u.synthetic and u.labelled and u.has_phone_scores and u.has_word_scores for u in corpus)
    train_spk = {u.speaker for u in load_corpus(out, split="train")}
    test_spk = {u.speaker for u in load_corpus(out, split="test")}
    assert train_spk and test_spk and not (train_spk & test_spk), "speakers must not cross splits"
    # text-phone marks and wav files as SO762 has them
    lines = (out / "resource/text-phone").read_text().splitlines()
    assert all(p.rsplit("_", 1)[1] in "BIES" for line in lines for p in line.split("\t")[1].split())
    uid, rel = (out / "train/wav.scp").read_text().splitlines()[0].split("\t")
    assert rel == f"WAVE/SPEAKER{uid[:4]}/{uid}.WAV"
    info = sf.info(str(out / rel))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.duration <= 6.0


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a = _tree_digest(Path(write_synthetic_corpus(tmp_path / "a", 12, seed=5)["out"]))
    b = _tree_digest(Path(write_synthetic_corpus(tmp_path / "b", 12, seed=5)["out"]))
    c = _tree_digest(Path(write_synthetic_corpus(tmp_path / "c", 12, seed=6)["out"]))
    assert a == b
    assert a["resource/scores.json"] != c["resource/scores.json"]


def test_scores_follow_the_documented_rules(small):
    out, _ = small
    scores = json.loads((out / "resource/scores.json").read_text())
    inj = json.loads((out / "resource/synthetic-injections.json").read_text())
    for uid, rec in scores.items():
        assert rec["synthetic"] is True
        n_words = len(rec["words"])
        deleted_words = sum(w["deleted"] for w in inj[uid]["words"])
        assert rec["completeness"] == round(10 * (n_words - deleted_words) / n_words, 1)
        expect_total = round((0.5 * rec["accuracy"] + 0.25 * rec["fluency"] + 0.25 * rec["prosodic"]) * rec["completeness"] / 10)
        assert rec["total"] == expect_total
        for a in ("accuracy", "fluency", "prosodic", "total"):
            assert isinstance(rec[a], int) and 0 <= rec[a] <= 10
        for w, wi in zip(rec["words"], inj[uid]["words"]):
            pa = w["phones-accuracy"]
            assert len(pa) == len(w["phones"].split()) == len(wi["states"])
            assert all(abs(p * 5 - round(p * 5)) < 1e-9 and 0 <= p <= 2 for p in pa), pa  # 0.2 steps
            assert w["accuracy"] == round(5 * float(np.mean(pa)))
            assert w["stress"] == (5 if wi["stress_error"] else 10)
            assert w["total"] == round(0.8 * w["accuracy"] + 0.2 * w["stress"])
            for p, s in zip(pa, wi["states"]):
                if s == "deleted":
                    assert p == 0.0
            listed = {m["index"]: m["pronounced-phone"] for m in w["mispronunciations"]}
            for i, s in enumerate(wi["states"]):
                if s == "deleted":
                    assert listed[i] == "<DEL>"
                elif s == "substituted":
                    assert listed[i] == wi["said"][i] != w["phones"].split()[i]
                else:
                    assert i not in listed


def _high_band_share(path: Path) -> float:
    """Share of spectral energy above 5.8 kHz: where only injected marks (distortion noise, the L1
    colouring of substitutions) put energy."""
    x, sr = sf.read(str(path), dtype="float32")
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[f > 5800].sum() / spec.sum())


def test_audio_carries_the_injected_errors(synth_corpus):
    """Sentence accuracy must be audible: the high-band energy share (the marks) correlates
    strongly and negatively with the accuracy label. Guards against labels drifting from audio."""
    scores = json.loads((synth_corpus / "resource/scores.json").read_text())
    wav = dict(line.split("\t") for line in (synth_corpus / "test/wav.scp").read_text().splitlines())
    ids = sorted(wav)
    share = [_high_band_share(synth_corpus / wav[u]) for u in ids]
    acc = [scores[u]["accuracy"] for u in ids]
    r = float(np.corrcoef(share, acc)[0, 1])
    assert r < -0.6, r
    assert L1_BAND_HZ[0] - 2 * L1_BAND_HZ[1] > 5500  # the L1 colouring sits above all clean phones


def test_silent_twin_has_same_labels_and_one_length(tmp_path):
    loud = write_synthetic_corpus(tmp_path / "loud", 6, seed=2)
    quiet = write_synthetic_corpus(tmp_path / "quiet", 6, seed=2, silence=True)
    assert (tmp_path / "loud/resource/scores.json").read_text() == (tmp_path / "quiet/resource/scores.json").read_text()
    for p in sorted((tmp_path / "quiet/WAVE").rglob("*.WAV")):
        q, _ = sf.read(str(p))
        loud_x, _ = sf.read(str(tmp_path / "loud" / p.relative_to(tmp_path / "quiet")))
        assert len(q) == SILENT_SECONDS * SAMPLE_RATE and np.abs(q).max() < 3e-3 < np.abs(loud_x).max()
    assert quiet["silent_audio"] and not loud["silent_audio"]



def test_silenced_split_keeps_lists_and_labels_and_silences_every_recording(small, tmp_path):
    out, _ = small
    quiet = silenced_split(out, tmp_path / "quiet", split="test")
    assert (quiet / "test/wav.scp").read_text() == (out / "test/wav.scp").read_text()
    assert (quiet / "resource/scores.json").read_text() == (out / "resource/scores.json").read_text()
    assert not (quiet / "train").exists()
    loud, silent = load_corpus(out, split="test"), load_corpus(quiet, split="test")
    assert [u.id for u in silent] == [u.id for u in loud] and not silent.failures
    assert [u.sentence.accuracy for u in silent] == [u.sentence.accuracy for u in loud]
    for u in silent:
        x, sr = sf.read(u.audio.path)
        assert sr == SAMPLE_RATE and len(x) == SILENT_SECONDS * SAMPLE_RATE and np.abs(x).max() < 3e-3
    with pytest.raises(FileNotFoundError, match="wav.scp"):
        silenced_split(tmp_path / "nothing", tmp_path / "q2")


def test_split_sizes_match_the_written_corpus(small):
    _, summary = small
    assert split_sizes(25, 0.2, seed=3) == (summary["train"], summary["test"])
    assert split_sizes(1000) == (800, 200) and split_sizes(3) == (3, 0)

def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="n_utterances"):
        write_synthetic_corpus(tmp_path, 0)
    with pytest.raises(ValueError, match="test_fraction"):
        write_synthetic_corpus(tmp_path, 5, test_fraction=1.0)
    with pytest.raises(ValueError, match="n_texts"):
        write_synthetic_corpus(tmp_path, 5, n_texts=0)


def test_n_texts_sets_how_many_reading_texts_the_speakers_share(tmp_path):
    """Few texts: readings repeat them (the recipes' corpora); many: almost every reading is new
    (a pretraining corpus). The default's texts are the first of a larger pool's."""
    from lmm_apa.data.synth import sentence_pool

    def texts(out):
        return [score["text"] for score in json.loads((out / "resource/scores.json").read_text()).values()]

    few = texts(Path(write_synthetic_corpus(tmp_path / "few", 40, seed=2, n_texts=3)["out"]))
    many = texts(Path(write_synthetic_corpus(tmp_path / "many", 40, seed=2, n_texts=5000)["out"]))
    assert len(set(few)) == 3 and len(set(many)) >= 35
    assert sentence_pool(2, 200)[:40] == sentence_pool(2)


def test_cli_data_synth(tmp_path):
    from typer.testing import CliRunner

    from lmm_apa.cli import app

    res = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "c"), "--utterances", "4", "--seed", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # the progress bar goes to stderr
    assert summary["utterances"] == 4 and summary["synthetic"] is True
    assert (tmp_path / "c/resource/scores.json").is_file()


@pytest.mark.slow
def test_default_corpus_size_time_and_skew(synth_corpus):
    """300 utterances in well under a minute, with SO762-like skew and a held-out split whose
    sentence accuracy spreads enough for a correlation to mean something."""
    summary = json.loads((synth_corpus.parent / "summary.json").read_text())
    print(f"\n300 synthetic utterances written in {summary['wall_s']} s; {summary['hours']} h of audio")
    assert summary["wall_s"] < 60
    assert summary["utterances"] == 300 and summary["test"] == 60
    assert 0.75 <= summary["phones"]["share_2.0"] <= 0.92  # SO762: 0.80
    assert summary["words"]["share_accuracy_10"] >= 0.65  # SO762: 0.85
    assert summary["words"]["stress_5"] <= 0.03 * summary["words"]["n"]  # SO762: 747 of 47,076
    assert summary["sentence"]["completeness"]["mean"] > 9.5
    assert summary["seconds"]["max"] <= 6.0
    test = load_corpus(synth_corpus, split="test")
    acc = np.array([u.sentence.accuracy for u in test])
    assert acc.std() > 1.5 and acc.min() <= 5 and acc.max() == 10
