"""Data-parallel predict (lmm_apa.infer.distributed): sharding, part files, merge, resume; and two
real CPU processes (torchrun, gloo) whose merged output equals the single-process output."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lmm_apa.infer.distributed import ShardSelector, done_elsewhere, merge_parts, part_files, part_path, read_lines, shard


def _write(path: Path, recs: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + tail)


def test_shard_covers_every_item_once_in_order():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items
    assert parts[1] == [1, 4, 7, 10]
    with pytest.raises(ValueError, match="rank 3"):
        shard(items, 3, 3)


def test_merge_orders_by_corpus_skips_done_and_drops_cut_lines(tmp_path):
    out = tmp_path / "preds.jsonl"
    _write(out, [{"id": "b", "output": "kept"}])
    _write(part_path(out, 0), [{"id": "d"}, {"id": "a"}], tail='{"id": "c", "outp')  # killed mid-line
    _write(part_path(out, 1), [{"id": "b", "output": "again"}, {"id": "e"}])
    _write(part_path(out, 2), [{"id": "zz"}])  # a part from an earlier run with three processes
    assert [p.name for p in part_files(out)] == ["preds.jsonl.part-0", "preds.jsonl.part-1", "preds.jsonl.part-2"]
    assert done_elsewhere(out) == {"a", "b", "d", "e", "zz"}
    assert merge_parts(out, ["a", "b", "c", "d", "e"]) == 4
    assert [r["id"] for r in read_lines(out)] == ["b", "a", "d", "e", "zz"]  # "b" was already there
    assert read_lines(out)[0]["output"] == "kept"
    assert part_files(out) == []
    assert merge_parts(out, ["a"]) == 0  # nothing left to merge


def test_bad_part_line_is_an_error_naming_the_file(tmp_path):
    out = tmp_path / "p.jsonl"
    part_path(out, 0).write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl\.part-0: line 2"):
        merge_parts(out, ["a", "b"])


def test_selector_shards_what_is_not_done_and_gives_failures_to_process_0():
    class U:
        def __init__(self, uid):
            self.id = uid

    utts = [U(f"u{i}") for i in range(6)]
    fails = [U("f0")]
    sel0, sel1 = ShardSelector({"u1"}, 0, 2), ShardSelector({"u1"}, 1, 2)
    (a0, f0), (a1, f1) = sel0(utts, fails), sel1(utts, fails)
    assert [u.id for u in a0] == ["u0", "u3", "u5"] and [u.id for u in a1] == ["u2", "u4"]
    assert [f.id for f in f0] == ["f0"] and f1 == []


def test_one_reader_for_resume_and_merge(tmp_path):
    """distributed and a single-process resume read lines alike: a broken last line, complete or
    cut short, is left out by both; a bad line before the last is an error naming file and line."""
    from lmm_apa.infer import distributed, records

    assert distributed.read_lines is records.read_lines
    for tail in ('{"id": "c", "outp\n', '{"id": "c", "outp'):
        path = tmp_path / "p.jsonl"
        _write(path, [{"id": "a"}, {"id": "b"}], tail=tail)
        assert [r["id"] for r in read_lines(path)] == ["a", "b"]
        assert records.done_ids(path) == {"a", "b"}
        assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'  # the resume appends after good lines
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    for reader in (read_lines, records.done_ids):
        with pytest.raises(ValueError, match=r"p\.jsonl: line 2 is not a prediction line"):
            reader(path)


def _fake_decoding(monkeypatch, tmp_path, n: int = 6):
    """A corpus of ``n`` utterances and a stand-in for the transformers decode loop that records
    which ids it decodes (no model: what is tested is who decodes what, and the merge)."""
    import soundfile as sf

    from lmm_apa.infer import predict

    lines = []
    for i in range(n):
        sf.write(tmp_path / f"u{i}.wav", [0.0] * 1600, 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": "HELLO"})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(x) + "\n" for x in lines))
    decoded: list[str] = []

    def run_hf(write, todo, task, *rest):
        for u in todo:
            decoded.append(u.id)
            write({"id": u.id, "task": task.name, "output": "new"})
        return 0

    monkeypatch.setattr(predict, "_run_hf", run_hf)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return corpus, decoded


def test_one_process_finishes_a_killed_data_parallel_run(monkeypatch, tmp_path):
    from lmm_apa.infer.predict import predict_corpus

    corpus, decoded = _fake_decoding(monkeypatch, tmp_path)
    out = tmp_path / "preds.jsonl"
    _write(part_path(out, 0), [{"id": "u0", "output": "old"}], tail='{"id": "u2", "ou')  # killed mid-line
    _write(part_path(out, 1), [{"id": "u3", "output": "old"}, {"id": "u1", "output": "old"}])
    summary = predict_corpus(corpus, task="sentence-total", out=out, decoding="free", backbone=object(), progress=False)
    assert decoded == ["u2", "u4", "u5"]  # what the parts hold is not decoded again
    assert [(r["id"], r["output"]) for r in read_lines(out)] == [
        ("u0", "old"), ("u1", "old"), ("u2", "new"), ("u3", "old"), ("u4", "new"), ("u5", "new")]
    assert part_files(out) == [] and summary["merged"] == 6 and summary["out"] == str(out)


def test_process_0_merges_in_the_order_of_its_own_corpus_load(monkeypatch, tmp_path):
    """The merge order comes from the load that picked the shard: the corpus is read once."""
    import accelerate

    from lmm_apa.data import corpus as corpus_module
    from lmm_apa.infer.distributed import predict_data_parallel
    from lmm_apa.infer.predict import predict_corpus

    class OneProcess:  # accelerate's state for a group of one, without touching the real singleton
        process_index, num_processes, is_main_process, device = 0, 1, True, "cpu"

        def __init__(self, cpu=False):
            pass

        def wait_for_everyone(self):
            pass

    corpus, decoded = _fake_decoding(monkeypatch, tmp_path, n=4)
    loads = []
    real_load = corpus_module.load_corpus
    monkeypatch.setattr(corpus_module, "load_corpus", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(accelerate, "PartialState", OneProcess)
    out = tmp_path / "preds.jsonl"
    _write(part_path(out, 3), [{"id": "u2", "output": "old"}])
    summary = predict_data_parallel(predict_corpus, source=corpus, task="sentence-total", out=out, decoding="free",
                                    backbone=object(), progress=False)
    assert len(loads) == 1
    assert decoded == ["u0", "u1", "u3"] and summary["merged"] == 4
    assert [r["id"] for r in read_lines(out)] == ["u0", "u1", "u2", "u3"]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with socket.socket() as sock:  # a free port: other runs of the suite may be launching too
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(port), "--no-python",
           str(Path(sys.executable).with_name("lmm-apa")), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _split_json(text: str) -> list[dict]:
    """The JSON summaries the processes printed, one after another."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    while (start := text.find("{", pos)) >= 0:
        obj, pos = decoder.raw_decode(text, start)
        out.append(obj)
    return out


def _same(a: list[dict], b: list[dict]) -> None:
    """Equal lines; the expected scores within 1e-4 (batches are composed differently)."""
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b):
        ex, ey = x.pop("expected", {}), y.pop("expected", {})
        assert x == y
        assert ex.keys() == ey.keys() and all(abs(ex[k] - ey[k]) < 1e-4 for k in ex)


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="needs torchrun")
def test_two_cpu_processes_equal_one_and_resume(tiny_qwen2_audio, tmp_path):
    from lmm_apa.infer.predict import predict_corpus

    from test_infer_predict import SENTENCES, _tone  # the same kind of corpus predict is tested on
    import soundfile as sf

    lines = []
    for i, text in enumerate(SENTENCES + SENTENCES[:3]):
        sf.write(tmp_path / f"u{i}.wav", _tone(0.5 + 0.1 * i, 170 + 30 * i), 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": text})
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    lines.insert(3, {"id": "broken", "audio": "broken.wav", "text": "HELLO THERE"})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(x) + "\n" for x in lines))
    common = ["--model", str(tiny_qwen2_audio), "--task", "sentence-total", "--decoding", "constrained",
              "--batch-size", "2", "--device", "cpu"]

    single = tmp_path / "single.jsonl"
    predict_corpus(corpus, model=str(tiny_qwen2_audio), task="sentence-total", decoding="constrained", batch_size=2,
                   device="cpu", out=single, progress=False)
    expected = read_lines(single)
    assert len(expected) == len(lines) and any("error" in r for r in expected)

    # a run killed earlier: one part holds two finished lines and half a line
    multi = tmp_path / "multi.jsonl"
    seeded = [dict(expected[5]), dict(expected[0])]
    _write(part_path(multi, 1), seeded, tail='{"id": "u4", "ou')
    done = _torchrun(["predict", str(corpus), "--out", str(multi), *common], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert part_files(multi) == []
    _same(read_lines(multi), [dict(r) for r in expected])
    summaries = _split_json(done.stdout)
    assert sorted(s["process"] for s in summaries) == [0, 1]
    assert sum(s["written"] for s in summaries) == len(lines) - 2  # the two seeded lines were not redone


def test_vllm_is_refused_under_a_launcher(monkeypatch, tmp_path):
    from lmm_apa.infer.predict import predict_corpus

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="--backend vllm runs in one process"):
        predict_corpus(tmp_path / "corpus.jsonl", out=tmp_path / "p.jsonl", backend="vllm", progress=False)
