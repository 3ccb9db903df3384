"""``lmm-apa data stats`` on every format: one JSON object, failures listed with reasons."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from lmm_apa.cli import app
from lmm_apa.data.stats import corpus_stats

runner = CliRunner()
FIXTURE_SECONDS = sum(0.5 + 0.1 * i for i in range(6))


def stats_cli(*args):
    result = runner.invoke(app, ["data", "stats", *map(str, args)])
    return result


@pytest.mark.parametrize("fixture, fmt", [
    ("so762_labelled_tree", "so762"), ("hf_disk_copy", "hf-disk"), ("parquet_copy", "parquet"), ("jsonl_manifest", "jsonl"),
])
def test_stats_on_every_format(request, fixture, fmt):
    source = request.getfixturevalue(fixture)
    result = stats_cli(source)
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert (s["format"], s["utterances"], s["labelled"], s["failed"]) == (fmt, 6, 6, [])
    assert s["synthetic_labels"] == 6 and s["with_word_scores"] == 6
    assert s["with_phone_scores"] == (0 if fmt == "jsonl" else 6)
    seconds = sum(0.5 + 0.05 * i for i in range(6)) if fmt == "jsonl" else FIXTURE_SECONDS
    assert s["hours"] == pytest.approx(seconds / 3600, abs=1e-4)
    test_only = json.loads(stats_cli(source, "--split", "test").output)
    assert test_only["utterances"] == 3 and test_only["splits"] == {"test": 3}


def test_stats_records_bad_audio_and_counts_the_rest(so762_labelled_tree, tmp_path):
    root = tmp_path / "so"
    shutil.copytree(so762_labelled_tree, root)
    wave = root / "WAVE"
    (wave / "SPEAKER0001" / "000010001.WAV").write_bytes(b"RIFF....WAVEjunkjunkjunkjunk")  # corrupt
    (wave / "SPEAKER0001" / "000010002.WAV").write_bytes(b"")  # zero-length
    (wave / "SPEAKER0002" / "000020001.WAV").unlink()  # missing
    sf.write(str(wave / "SPEAKER0003" / "000030001.WAV"), np.zeros(4000, dtype=np.float32), 16000)  # silent
    s = corpus_stats(root)
    reasons = {f["id"]: f["reason"] for f in s["failed"]}
    assert s["utterances"] == 2 and s["labelled"] == 2
    assert set(reasons) == {"000010001", "000010002", "000020001", "000030001"}
    assert "000010001.WAV: unreadable audio" in reasons["000010001"]
    assert "000010002.WAV: audio file is empty (0 bytes)" in reasons["000010002"]
    assert "000020001.WAV: audio file not found" in reasons["000020001"]
    assert "000030001.WAV: audio is all silent" in reasons["000030001"]
    assert s["hours"] == pytest.approx((0.9 + 1.0) / 3600, abs=1e-4)
    assert corpus_stats(root, deep=False)["utterances"] == 3  # header-only check cannot see silence


def test_stats_cli_errors_cleanly_on_unknown_source(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    result = stats_cli(tmp_path / "x.csv")
    assert result.exit_code == 2 and "x.csv: not a corpus" in result.output
    result = stats_cli(tmp_path / "missing")
    assert result.exit_code == 2 and "no such file" in result.output


def test_installed_command_on_the_real_mini_corpus(mini_so762):
    """The one subprocess test: the console script as users run it, on real SO762 audio."""
    out = subprocess.run(
        [sys.executable, "-m", "lmm_apa.cli", "data", "stats", str(mini_so762), "--split", "train"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert (s["format"], s["utterances"], s["labelled"], s["failed"]) == ("so762", 40, 0, [])
    assert 0.03 < s["hours"] < 0.06 and s["over_backbone_limit"]["qwen2-audio"] == 0
