"""Health and readiness, and who may call the server: Host check, CORS, API key, offline docs."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from serve_utils import Recorder, fake_backbone, wait_ready, wav_bytes

FILES = {"audio": ("a.wav", wav_bytes(), "audio/wav")}


def app_with(**options):
    from lmm_apa.serve.app import ServeOptions, create_app

    return create_app(backbone=fake_backbone(), batch_fn=Recorder(), options=ServeOptions(**options))


def local(app):
    return TestClient(app, base_url="http://127.0.0.1:8000")


def test_health_and_ready_once_loaded():
    with local(app_with()) as c:
        wait_ready(c)
        assert c.get("/ready").json() == {"ready": True}
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["loaded"] and h["limits"]["max_seconds"] == 15.0


def test_health_names_the_model_without_the_servers_folders(tmp_path):
    """/health is public: a local model or adapter shows by its folder's name, a hub id as is."""
    from lmm_apa.serve.app import create_app, public_name

    model, adapter = tmp_path / "models" / "qwen-tiny", tmp_path / "runs" / "adapter-7"
    app = create_app(model=str(model), adapter=str(adapter), backbone=fake_backbone(), batch_fn=Recorder())
    with local(app) as c:
        wait_ready(c)
        h = c.get("/health")
    assert h.json()["model"] == "qwen-tiny" and h.json()["adapter"] == "adapter-7"
    assert str(tmp_path) not in h.text
    assert public_name("Qwen/Qwen2-Audio-7B-Instruct") == "Qwen/Qwen2-Audio-7B-Instruct"
    assert public_name("./runs/a") == "a" and public_name("~/x/y") == "y" and public_name(None) is None


def test_model_that_fails_to_load_answers_503_not_422(tmp_path):
    """Regression: a model that failed to load answered 422 and /health still said ok."""
    from lmm_apa.serve.app import create_app

    with TestClient(create_app(model=str(tmp_path / "no-such-model")), base_url="http://127.0.0.1") as c:
        deadline = time.monotonic() + 60
        while c.get("/health").json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ready = c.get("/ready")
        assert ready.status_code == 503 and "failed to load" in ready.json()["detail"]
        h = c.get("/health").json()
        assert h["state"] == "failed" and not h["loaded"]
        r = c.post("/assess", files=FILES, data={"text": "We call"})
        assert r.status_code == 503 and r.json()["error"] == "not_ready"
        assert "failed to load" in r.json()["detail"]


def test_ready_is_503_while_loading_then_200(monkeypatch):
    """The model loads at start, in the worker thread: /ready says why it is not ready meanwhile."""
    import lmm_apa.models.loading as loading
    from lmm_apa.serve.app import create_app

    release = threading.Event()

    def slow_load(model, adapter=None, device=None):
        release.wait(30)
        return fake_backbone()

    monkeypatch.setattr(loading, "load_model", slow_load)
    with local(create_app(model="some/model", batch_fn=Recorder())) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json() == {"error": "not_ready", "detail": "the model is loading",
                                                      "field": None}
        assert c.get("/health").json()["state"] == "loading"
        assert c.post("/assess", files=FILES, data={"text": "We call"}).status_code == 503
        release.set()
        wait_ready(c)
        assert c.post("/assess", files=FILES, data={"text": "We call"}).status_code == 200


def test_foreign_host_is_refused_by_default():
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    with TestClient(app_with(), base_url="http://evil.example") as c:
        assert c.get("/health").status_code == 400
        assert c.post("/assess", files=FILES, data={"text": "We call"}).status_code == 400
    with TestClient(app_with(allowed_hosts=("school.example",)), base_url="http://school.example") as c:
        wait_ready(c)
        assert c.post("/assess", files=FILES, data={"text": "We call"}).status_code == 200


def test_cross_site_pages_cannot_submit_unless_listed():
    with local(app_with()) as c:
        wait_ready(c)
        r = c.post("/assess", files=FILES, data={"text": "We call"}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in r.headers
        same = c.post("/assess", files=FILES, data={"text": "We call"}, headers={"Origin": "http://127.0.0.1:8000"})
        assert same.status_code == 200
    with local(app_with(cors_origins=("https://class.example",))) as c:
        wait_ready(c)
        pre = c.options("/assess", headers={"Origin": "https://class.example", "Access-Control-Request-Method": "POST"})
        assert pre.headers["access-control-allow-origin"] == "https://class.example"
        r = c.post("/assess", files=FILES, data={"text": "We call"}, headers={"Origin": "https://class.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://class.example"


def test_api_key_required_on_scoring_when_set():
    with local(app_with(api_key="s3cret")) as c:
        wait_ready(c)
        r = c.post("/assess", files=FILES, data={"text": "We call"})
        assert r.status_code == 401 and r.json()["field"] == "api_key"
        assert c.post("/assess", files=FILES, data={"text": "We call"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/assess", files=FILES, data={"text": "We call"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        ok = c.post("/assess", files=FILES, data={"text": "We call"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").json()["auth_required"] is True
        assert c.get("/").status_code == 200  # the page itself is public; it asks for the key


def test_api_key_from_the_environment(monkeypatch):
    from lmm_apa.serve.app import resolve_api_key

    monkeypatch.setenv("LMM_APA_API_KEY", "from-env")
    assert resolve_api_key(None) == "from-env" and resolve_api_key("flag") == "flag"
    monkeypatch.delenv("LMM_APA_API_KEY")
    assert resolve_api_key(None) is None


def test_docs_off_by_default_and_offline_schema():
    with local(app_with()) as c:
        assert c.get("/docs").status_code == 404
        assert "/assess" in c.get("/openapi.json").json()["paths"]
    with local(app_with(docs=True)) as c:
        assert c.get("/docs").status_code == 200


def test_cli_passes_the_serve_options(monkeypatch):
    from typer.testing import CliRunner

    import lmm_apa.serve.app as serve_app
    from lmm_apa.cli import app

    seen = {}
    monkeypatch.setattr(serve_app, "run_server", lambda **kw: seen.update(kw))
    monkeypatch.setenv("LMM_APA_API_KEY", "env-key")
    result = CliRunner().invoke(app, ["serve", "--queue-size", "4", "--max-batch", "1", "--allowed-hosts",
                                      "a.example,b.example", "--cors-origin", "https://c.example", "--timeout", "9"])
    assert result.exit_code == 0, result.output
    opts = seen["options"]
    assert (opts.queue_size, opts.max_batch, opts.request_timeout_s) == (4, 1, 9.0)
    assert opts.allowed_hosts == ("a.example", "b.example") and opts.cors_origins == ("https://c.example",)
    assert opts.api_key == "env-key" and seen["host"] == "127.0.0.1" and not opts.docs
