"""Dynamic batching on the real tiny Qwen2-Audio: requests that arrive together are decoded in one
constrained batch, and each answer is the one that request gets decoded alone."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
from serve_utils import running_server, wav_bytes

REQUESTS = [  # different lengths of audio and text, so the batch is padded
    (wav_bytes(seconds=0.6, sr=16000, freq=180.0), "Bear."),
    (wav_bytes(seconds=1.4, sr=44100, freq=260.0), "We call it bear."),
    (wav_bytes(seconds=1.0, sr=22050, freq=330.0, channels=2), "I like blue fish."),
]


@pytest.fixture(scope="module")
def backbone(tiny_qwen2_audio):
    from lmm_apa.models.loading import load_model

    return load_model(str(tiny_qwen2_audio), device="cpu")


def _alone(backbone, audio: bytes, text: str) -> dict:
    from lmm_apa.data.audio import AudioLimits, read_upload
    from lmm_apa.infer.assess import assess_waveforms

    wave = read_upload(io.BytesIO(audio), "a.wav", AudioLimits(), target_sr=backbone.sampling_rate)
    return assess_waveforms(backbone, [(wave, backbone.sampling_rate, text, None)])[0]


def test_batched_answers_equal_unbatched(backbone):
    from lmm_apa.serve.app import ServeOptions, create_app

    app = create_app(backbone=backbone, options=ServeOptions(max_batch=4, batch_window_s=1.0))

    def post(req):
        audio, text = req
        return httpx.post(f"{base}/assess", files={"audio": ("a.wav", audio, "audio/wav")}, data={"text": text},
                          timeout=300)

    with running_server(app) as base:
        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            answers = list(pool.map(post, REQUESTS))
    assert [r.status_code for r in answers] == [200] * len(REQUESTS), [r.text[:200] for r in answers]
    assert list(app.state.worker.batches) == [len(REQUESTS)]  # one decode for all three
    for (audio, text), r in zip(REQUESTS, answers):
        got, ref = r.json(), _alone(backbone, audio, text)
        assert got["parse_ok"] and got["output"] == ref["output"]
        assert got["sentence"] == ref["sentence"]
        assert [w["scores"] for w in got["words"]] == [w["scores"] for w in ref["words"]]
        for k, v in ref["sentence_expected"].items():
            assert got["sentence_expected"][k] == pytest.approx(v, abs=1e-4)
        for gw, rw in zip(got["words"], ref["words"]):
            for gp, rp in zip(gw["phones"], rw["phones"]):
                assert gp["score"] == rp["score"] and gp["expected"] == pytest.approx(rp["expected"], abs=1e-4)
