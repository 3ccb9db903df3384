"""Concurrency: a bounded queue (503 + Retry-After when full), a per-request deadline (504), requests
whose client left dropped before the model, dynamic batches, and a bounded shutdown.

The model here is a fake batch function (``serve_utils.Recorder``) so timing is under the test's
control; ``test_serve_batching.py`` decodes real batches on the tiny model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serve_utils import Recorder, fake_backbone, running_server, wait_ready, wav_bytes

WAV = wav_bytes()
WORDS = ["we", "call", "it", "bear", "cat", "sat", "dog", "run", "sun", "day", "red"]


def make_app(recorder, **options):
    from lmm_apa.serve.app import ServeOptions, create_app

    return create_app(backbone=fake_backbone(), batch_fn=recorder, options=ServeOptions(**options))


def post(base, text="We call it bear.", timeout=30.0):
    return httpx.post(f"{base}/assess", files={"audio": ("a.wav", WAV, "audio/wav")}, data={"text": text},
                      timeout=timeout)


def test_full_queue_answers_503_with_retry_after():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    app = make_app(rec, queue_size=2, max_batch=1)
    with running_server(app) as base:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(post, base, f"bear {WORDS[i]}") for i in range(8)]
            deadline = time.monotonic() + 20  # 1 in the model, 2 waiting: the rest are refused at once
            while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            refused = [f.result() for f in futures if f.done()]
            gate.set()
            answers = [f.result() for f in futures]
    busy = [r for r in answers if r.status_code == 503]
    assert len(refused) == len(busy) == 5 and all(r in busy for r in refused), [r.status_code for r in answers]
    assert all(r.status_code in (200, 503) for r in answers)
    for r in busy:
        assert r.headers["retry-after"].isdigit() and r.json()["error"] == "busy"
    assert sum(r.status_code == 200 for r in answers) == len(rec.texts) == 3


def test_deadline_answers_504_and_the_late_job_never_runs():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    app = make_app(rec, request_timeout_s=1.0, max_batch=1)
    with running_server(app) as base:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, base, "first")
            time.sleep(0.3)
            second = pool.submit(post, base, "second")
            r2 = second.result()
            r1 = first.result()
            gate.set()
            time.sleep(0.3)
    assert r1.status_code == 504 and r2.status_code == 504, (r1.text, r2.text)
    assert r2.json() == {"error": "timeout", "detail": r2.json()["detail"], "field": None}
    assert "second" not in rec.texts  # past its deadline before the model was free: never decoded


def test_client_that_disconnects_is_dropped_before_the_model():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    app = make_app(rec, max_batch=1)
    with running_server(app) as base:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(post, base, "holder")
            time.sleep(0.3)
            with pytest.raises(httpx.ReadTimeout):
                post(base, "gone away", timeout=0.8)  # the client gives up and closes the connection
            time.sleep(0.5)  # the server notices the disconnect while the job is still queued
            gate.set()
            assert holder.result().status_code == 200
        time.sleep(0.3)
        assert post(base, "after").status_code == 200
    assert rec.texts == ["holder", "after"], rec.texts


def test_requests_arriving_together_are_batched():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    app = make_app(rec, max_batch=4, queue_size=16)
    with running_server(app) as base:
        with ThreadPoolExecutor(9) as pool:
            futures = [pool.submit(post, base, f"bear {WORDS[i]}") for i in range(9)]
            time.sleep(1.5)
            gate.set()
            assert all(f.result().status_code == 200 for f in futures)
    assert max(rec.batches) == 4 and sum(rec.batches) == 9 and len(rec.batches) <= 5, rec.batches


def test_max_batch_one_turns_batching_off():
    rec = Recorder(delay=0.05)
    app = make_app(rec, max_batch=1)
    with running_server(app) as base:
        with ThreadPoolExecutor(4) as pool:
            assert all(r.status_code == 200 for r in pool.map(lambda i: post(base, f"bear {WORDS[i]}"), range(4)))
    assert rec.batches == [1, 1, 1, 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from serve_utils import Recorder, fake_backbone
    from lmm_apa.serve.app import ServeOptions, create_app
    import uvicorn
    app = create_app(backbone=fake_backbone(), batch_fn=Recorder(delay=600),
                     options=ServeOptions(shutdown_timeout_s=2))
    uvicorn.run(app, host="127.0.0.1", port={port}, timeout_graceful_shutdown=2, log_level="warning")
""")


def test_sigterm_ends_within_a_bounded_time_while_a_decode_runs(tmp_path):
    """A decode that would run for 10 minutes must not hold a SIGTERM'd server."""
    port = _free_port()
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT.format(tests=str(Path(__file__).parent), port=port))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        pending = threading.Thread(target=lambda: _swallow(post, base, "long"), daemon=True)
        pending.start()
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert time.monotonic() - started < 10
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/health", timeout=1)  # no longer accepting
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _swallow(fn, *args):
    try:
        fn(*args)
    except httpx.HTTPError:
        pass


def _job(text="bear"):
    import numpy as np

    from lmm_apa.serve.worker import Job

    return Job(np.ones(1600, dtype=np.float32), 16000, text, None, "constrained", deadline=time.monotonic() + 30)


def _ready_worker(recorder, **kw):
    from lmm_apa.serve.worker import ModelWorker

    worker = ModelWorker(lambda: fake_backbone(), recorder, window_s=0.0, **kw).start()
    deadline = time.monotonic() + 10
    while not worker.ready:
        assert time.monotonic() < deadline, worker.reason
        time.sleep(0.01)
    return worker


def test_a_job_submitted_as_the_server_stops_is_answered_not_left_to_time_out():
    """submit() passed its checks, then stop() ran before the job reached the queue: the job must
    still be answered (decoded, or refused as not ready) rather than wait for its deadline."""
    from concurrent.futures import wait

    from lmm_apa.serve.worker import NotReady

    worker = _ready_worker(Recorder(), max_batch=1, queue_size=4)
    stopper = threading.Thread(target=worker.stop, args=(5.0,))
    put = worker.queue.put_nowait

    def put_after_stop_began(job):
        if job is None:  # stop()'s own wake-up call
            return put(job)
        stopper.start()
        stopper.join(0.5)  # stop() runs now, between submit's check and its put (unless it must wait)
        put(job)

    worker.queue.put_nowait = put_after_stop_began
    future = worker.submit(_job())
    stopper.join(10)
    done, _ = wait([future], timeout=3)
    assert done, "the job was never answered"
    if future.exception() is not None:
        assert isinstance(future.exception(), NotReady)
    with pytest.raises(NotReady):
        worker.submit(_job())


def test_batch_history_is_bounded():
    from lmm_apa.serve.worker import RECENT_BATCHES

    rec = Recorder()
    worker = _ready_worker(rec, max_batch=1, queue_size=4)
    n = RECENT_BATCHES + 10
    for i in range(n):
        worker.submit(_job(f"bear {i}")).result(timeout=10)
    worker.stop(5.0)
    assert len(worker.batches) == RECENT_BATCHES and worker.batches_run == n
