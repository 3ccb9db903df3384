"""Helpers shared by the serve tests: audio bytes, a uvicorn server in a thread, a fake backbone."""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf


def wav_bytes(seconds=0.8, sr=16000, freq=200.0, channels=1, fmt="WAV", subtype=None) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def fake_backbone(max_seconds=15.0, min_seconds=0.1):
    """Just the facts the server reads from a backbone (for tests whose model is a fake batch_fn)."""
    return SimpleNamespace(sampling_rate=16000, max_audio_seconds=max_seconds, min_audio_seconds=min_seconds,
                           arch="fake", source="fake")


def echo_result(job) -> dict:
    return {"text": job.text, "parse_ok": True, "sentence": {"accuracy": 7.0}, "words": [], "samples": len(job.wave)}


class Recorder:
    """A fake batch function: records what reached the 'model', optionally slow or gated."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.delay, self.gate, self.batches, self.texts = delay, gate, [], []

    def __call__(self, backbone, jobs):
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        self.batches.append(len(jobs))
        self.texts.extend(j.text for j in jobs)
        return [echo_result(j) for j in jobs]


@contextmanager
def running_server(app, **config):
    """The app under uvicorn on 127.0.0.1:<free port> in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def client(tiny_qwen2_audio):
    """A TestClient on the real app serving the tiny Qwen2-Audio (import this fixture by name)."""
    from fastapi.testclient import TestClient

    from lmm_apa.models.loading import load_model
    from lmm_apa.serve.app import create_app

    bb = load_model(str(tiny_qwen2_audio), device="cpu")
    with TestClient(create_app(model=str(tiny_qwen2_audio), backbone=bb, task="full"),
                    base_url="http://127.0.0.1") as c:
        yield c


def wait_ready(client, timeout=30.0):
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "server never became ready"
        time.sleep(0.05)
