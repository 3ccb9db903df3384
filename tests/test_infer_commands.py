"""Consistent commands and records in their rooms, without a model: predict's default decoding,
the untrained-task warning, the adapter record written once, prediction records without the
predict <-> vLLM cycle, audio read once per assess, ``data stats`` on a folder that is not a
corpus, per-task skip counts, ``data synth`` progress, unwrapped log lines off a terminal."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from lmm_apa.cli import app
from lmm_apa.data.schema import Audio, Utterance, Word
from lmm_apa.infer.generate import Decoded
from lmm_apa.models.loading import UntrainedTaskWarning
from lmm_apa.prompts.tasks import TASK_NAMES

SRC = Path(__file__).resolve().parents[1] / "src" / "lmm_apa"


def _tone(seconds=0.5, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture()
def manifest(tmp_path) -> Path:
    lines = []
    for i, text in enumerate(["WE CALL IT BEAR", "THE CAT SAT"]):
        sf.write(tmp_path / f"u{i}.wav", _tone(0.4 + 0.1 * i), 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": text})
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@dataclass
class FakeBackbone:
    """What predict / assess read of a backbone before decoding; decoding itself is stubbed."""

    sampling_rate: int = 16000
    max_audio_seconds: float = 30.0
    model: torch.nn.Module = field(default_factory=lambda: torch.nn.Linear(1, 1))


@pytest.fixture()
def stub_decoder(monkeypatch):
    """Replace the decoder by one that answers nothing and remembers the decoding it was asked for."""
    from lmm_apa.infer import predict

    asked = []

    def decode(backbone, task, prepared, decoding, lookahead=None):
        asked.append(decoding)
        return [Decoded(output="", decoding=decoding) for _ in prepared]

    monkeypatch.setattr(predict, "decode_prepared", decode)
    return asked


def _adapter(tmp_path, tasks) -> Path:
    from lmm_apa.models.adapters import ADAPTER_INFO

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / ADAPTER_INFO).write_text(json.dumps({"arch": "qwen2-audio", "base": "some/base", "tasks": tasks}))
    return folder


# --------------------------------------------------------------------------- predict


def test_predict_defaults_to_constrained_decoding(manifest, tmp_path, stub_decoder):
    from lmm_apa.infer.predict import predict_corpus

    s = predict_corpus(manifest, backbone=FakeBackbone(), task="full", out=tmp_path / "p.jsonl", progress=False)
    assert s["decoding"] == "constrained" and set(stub_decoder) == {"constrained"}
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [x["decoding"] for x in lines] == ["constrained", "constrained"]
    stub_decoder.clear()  # mdd: the default (constrained) is honoured by its grammar decoder
    s = predict_corpus(manifest, backbone=FakeBackbone(), task="mdd", out=tmp_path / "m.jsonl", progress=False)
    assert s["decoding"] == stub_decoder[0] == get_mdd_decoding()


def get_mdd_decoding() -> str:
    from lmm_apa.prompts.tasks import get_task

    return get_task("mdd").decoding_for("constrained")


def test_cli_predict_default_decoding_and_task_help(monkeypatch, tmp_path, manifest):
    import lmm_apa.infer.predict as predict

    seen = {}
    monkeypatch.setattr(predict, "predict_corpus", lambda source, **kw: seen.update(kw) or {"ok": True})
    result = CliRunner().invoke(app, ["predict", str(manifest), "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert seen["decoding"] == "constrained"
    help_text = CliRunner().invoke(app, ["predict", "--help"], terminal_width=200).output
    assert all(name in help_text for name in TASK_NAMES), help_text


def test_predicting_a_task_the_adapter_was_not_trained_on_warns(manifest, tmp_path, stub_decoder):
    from lmm_apa.infer.predict import predict_corpus

    adapter = _adapter(tmp_path, ["apa"])
    with pytest.warns(UntrainedTaskWarning, match="trained on task\\(s\\) apa, not 'full'"):
        s = predict_corpus(manifest, backbone=FakeBackbone(), adapter=str(adapter), task="full",
                           out=tmp_path / "p.jsonl", progress=False)
    assert s["warnings"] and "not 'full'" in s["warnings"][0]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedTaskWarning)  # the trained task: no warning
        s = predict_corpus(manifest, backbone=FakeBackbone(), adapter=str(adapter), task="apa",
                           out=tmp_path / "a.jsonl", progress=False)
    assert "warnings" not in s


def test_cli_prints_the_untrained_task_warning_as_one_line(monkeypatch, manifest, tmp_path, stub_decoder):
    import lmm_apa.infer.predict as predict

    monkeypatch.setattr(predict, "load_model", lambda *a, **k: FakeBackbone())
    adapter = _adapter(tmp_path, ["word-sentence", "apa"])
    result = CliRunner().invoke(app, ["predict", str(manifest), "--adapter", str(adapter), "--task", "mdd",
                                      "--out", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    assert f"warning: adapter {adapter} was trained on task(s) word-sentence, apa, not 'mdd'" in result.stderr
    assert json.loads(result.stdout)["warnings"]


# --------------------------------------------------------------------------- records and loading


def test_adapter_record_is_written_once_with_what_training_adds(tmp_path):
    from lmm_apa.models.adapters import ADAPTER_INFO, AdapterState, read_adapter_info, save_adapter
    from lmm_apa.models.loading import adapter_base, adapter_tasks

    class Model:
        def save_pretrained(self, path):
            Path(path).mkdir(parents=True, exist_ok=True)

    @dataclass
    class Bb:
        model: object
        arch: str = "qwen2-audio"
        source: str = "base/model"
        adapter: object = AdapterState(method="lora")

    out = save_adapter(Bb(Model()), tmp_path / "a", extra={"tasks": ["full", "apa"], "objective": "sft"})
    info = json.loads((out / ADAPTER_INFO).read_text())
    assert info == {"arch": "qwen2-audio", "method": "lora", "base": "base/model", "own_lora_merged": False,
                    "tasks": ["full", "apa"], "objective": "sft"}
    assert read_adapter_info(out) == info and read_adapter_info(tmp_path) == {}
    assert adapter_base(out) == "base/model" and adapter_tasks(out) == ["full", "apa"]
    assert adapter_tasks(tmp_path) is None


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_prediction_records_live_apart_so_vllm_and_predict_do_not_import_each_other():
    assert "lmm_apa.infer.predict" not in _imported_modules(SRC / "infer" / "vllm_backend.py")
    assert "lmm_apa.infer.records" in _imported_modules(SRC / "infer" / "vllm_backend.py")
    code = "import sys, lmm_apa.infer.records; print('lmm_apa.infer.predict' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_assess_reads_the_recording_once(monkeypatch, tmp_path, stub_decoder):
    import lmm_apa.data.audio as audio_mod
    from lmm_apa.infer.assess import assess_recording

    wav = tmp_path / "r.wav"
    sf.write(wav, _tone(0.7), 16000)
    loads = []
    real = audio_mod.load_audio
    monkeypatch.setattr(audio_mod, "load_audio", lambda *a, **k: loads.append(a) or real(*a, **k))
    result = assess_recording(wav, "We call it bear.", backbone=FakeBackbone())
    assert len(loads) == 1
    assert result["duration_s"] == pytest.approx(0.7, abs=1e-3)
    assert result["decoding"] == "constrained" and [w["word"] for w in result["words"]] == ["WE", "CALL", "IT", "BEAR"]


# --------------------------------------------------------------------------- data and training


def test_data_stats_refuses_a_folder_that_is_not_a_corpus(tmp_path):
    deep = tmp_path / "project" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "stray.parquet").write_bytes(b"PAR1")  # deep inside: not a corpus layout, never searched for
    (tmp_path / "project" / "notes.txt").write_text("hello")
    result = CliRunner().invoke(app, ["data", "stats", str(tmp_path / "project")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'project'}: not a corpus this toolkit reads" in result.stderr


def test_data_stats_counts_mispronunciation_labels(so762_labelled_tree):
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.data.stats import corpus_stats

    utts = load_corpus(so762_labelled_tree).utterances
    expected = sum(len(w.mispronunciations) for u in utts for w in u.words)
    assert expected > 0  # the fixture labels some deletions
    s = corpus_stats(so762_labelled_tree)
    assert s["mispronunciations"] == expected
    assert s["with_mispronunciations"] == sum(any(w.mispronunciations for w in u.words) for u in utts)


def test_a_bad_recording_is_counted_once_per_task_it_drops(tmp_path):
    from lmm_apa.train.dataset import Example, SkipLog, estimate_lengths

    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, _tone(0.5), 16000)
    bad.write_bytes(b"RIFF not audio")
    utts = [Utterance(uid, "WE", [Word("WE", ["W", "IY1"])], Audio(str(p))) for uid, p in (("g", good), ("b", bad))]
    examples = [Example(u, task, "prompt", "target") for task in ("apa", "mdd") for u in utts]
    log = SkipLog(tmp_path / "skipped.jsonl")
    kept = estimate_lengths(examples, None, "qwen2-audio", log)
    assert [(e.utt.id, e.task) for e in kept] == [("g", "apa"), ("g", "mdd")]
    lines = [json.loads(x) for x in (tmp_path / "skipped.jsonl").read_text().splitlines()]
    assert sorted((x["id"], x["task"]) for x in lines) == [("b", "apa"), ("b", "mdd")] and log.count == 2


def test_data_synth_shows_progress_on_stderr(tmp_path):
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "syn"), "-n", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["utterances"] == 3
    assert "synth" in result.stderr and "3/3" in result.stderr


def test_log_lines_are_not_wrapped_off_a_terminal():
    from lmm_apa.console import stderr_console

    buf = io.StringIO()
    message = "evaluating 'ft' (full; adapter runs/ft/adapter) " + "and a long tail of words " * 10
    stderr_console(buf).print(message)
    assert buf.getvalue() == message + "\n"
