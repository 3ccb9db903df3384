"""The HTTP API and the learner page, through FastAPI's TestClient with a preloaded tiny backbone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from serve_utils import client, wav_bytes  # noqa: F401 - client is a fixture


def test_page_and_health(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "MediaRecorder" in r.text and "encodeWav" in r.text and 'fetch("assess"' in r.text
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["loaded"] and h["task"] == "full" and h["arch"] == "qwen2-audio"


def test_assess_native_and_azure(client):
    files = {"audio": ("learner.wav", wav_bytes(sr=44100), "audio/wav")}
    r = client.post("/assess", files=files, data={"text": "We call it bear."})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["parse_ok"] and [w["word"] for w in body["words"]] == ["WE", "CALL", "IT", "BEAR"]
    assert body["decoding"] == "constrained" and "sentence_expected" in body
    assert body["duration_s"] == pytest.approx(0.8, abs=0.01)
    r = client.post("/assess", files={"audio": ("a.wav", wav_bytes(), "audio/wav")},
                    data={"text": "We call", "format": "azure"})
    assert r.status_code == 200
    nb = r.json()["NBest"][0]
    assert [w["Word"] for w in nb["Words"]] == ["we", "call"] and "PronScore" in nb["PronunciationAssessment"]


def test_assess_rejects_bad_input_with_reason(client):
    r = client.post("/assess", files={"audio": ("junk.wav", b"RIFF....nope", "audio/wav")}, data={"text": "We call"})
    assert r.status_code == 415 and "junk.wav" in r.json()["detail"] and r.json()["field"] == "audio"
    silent = io.BytesIO()
    sf.write(silent, np.zeros(8000, dtype=np.float32), 16000, format="WAV")
    r = client.post("/assess", files={"audio": ("quiet.wav", silent.getvalue(), "audio/wav")}, data={"text": "We call"})
    assert r.status_code == 422 and "silent" in r.json()["detail"]
    r = client.post("/assess", files={"audio": ("a.wav", wav_bytes(), "audio/wav")}, data={"text": "Qzxv blorft"})
    assert r.status_code == 422 and "QZXV" in r.json()["detail"].upper()
    r = client.post("/assess", files={"audio": ("a.wav", wav_bytes(), "audio/wav")}, data={"text": "   "})
    assert r.status_code == 422
    r = client.post("/assess", data={"text": "We call"})  # no file at all
    assert r.status_code == 422


def test_create_app_refuses_unknown_task():
    from lmm_apa.serve.app import create_app

    with pytest.raises(ValueError, match="unknown task"):
        create_app(task="nope")
