"""The model worker: one thread owns the model; requests wait in a bounded queue and are decoded in
dynamic batches.

Why a thread and not a lock: one model, one device, so only one decode runs at a time; but a
decode of eight requests costs far less than eight decodes (the forward passes are shared), so
requests that arrive within a few milliseconds of each other are taken together (up to
``max_batch``). The queue is bounded so a classroom that overloads the server is told to come back
(503 + Retry-After) instead of waiting minutes; a request whose client left or whose deadline
passed is dropped before it reaches the model."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger("lmm_apa.serve")


class QueueFull(Exception):
    """No room in the queue: the caller answers 503 with Retry-After."""


class NotReady(Exception):
    """The model is not loaded (still loading, failed, or the server is stopping)."""


class Dropped(Exception):
    """The request was abandoned (client gone, deadline passed) before it reached the model."""


@dataclass
class Job:
    """One request waiting for the model."""

    wave: np.ndarray  # float32 mono at the backbone's rate
    sampling_rate: int
    text: str
    phones: str | None
    decoding: str
    deadline: float  # time.monotonic() after which nobody waits for the answer
    reference: Any = None  # the Utterance the text check already built (words + phones), reused by the decode
    future: Future = field(default_factory=Future)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def live(self) -> bool:
        return not self.abandoned.is_set() and time.monotonic() < self.deadline


RECENT_BATCHES = 256  # batch sizes kept for inspection; older ones are only counted
BatchFn = Callable[[Any, Sequence[Job]], list]  # (backbone, jobs) -> one result or Exception per job


def assess_jobs(task: str) -> BatchFn:
    """The real batch function: the infer layer's batch entry, one call per decoding mode."""

    def run(backbone, jobs: Sequence[Job]) -> list:
        from lmm_apa.infer.assess import assess_waveforms

        results: list = [None] * len(jobs)
        for decoding in dict.fromkeys(j.decoding for j in jobs):
            idx = [i for i, j in enumerate(jobs) if j.decoding == decoding]
            items = [(jobs[i].wave, jobs[i].sampling_rate, jobs[i].reference or jobs[i].text, jobs[i].phones)
                     for i in idx]
            for i, res in zip(idx, assess_waveforms(backbone, items, task=task, decoding=decoding)):
                results[i] = ValueError(res["error"]) if "error" in res else res
        return results

    return run


class ModelWorker:
    """Loads the model, then serves jobs from a bounded queue in batches of up to ``max_batch``."""

    def __init__(self, load: Callable[[], Any], batch_fn: BatchFn, max_batch: int = 16, queue_size: int = 32,
                 window_s: float = 0.01):
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        self._load, self._batch_fn = load, batch_fn
        self.max_batch, self.window_s = max_batch, window_s
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.backbone = None
        self.state, self.reason = "loading", "the model is loading"
        self.batches: deque[int] = deque(maxlen=RECENT_BATCHES)  # sizes of the latest batches run (tests, debugging)
        self.batches_run = 0  # every batch since start (the deque keeps only the latest)
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # submit vs stop: no job lands in the queue after stop drained it
        self._thread = threading.Thread(target=self._main, name="lmm-apa-model", daemon=True)

    def start(self) -> "ModelWorker":
        self._thread.start()
        return self

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def has_room(self) -> bool:
        return not self.queue.full()

    def submit(self, job: Job) -> Future:
        with self._lock:  # stop() holds it while it flags and drains: a job is either refused or answered
            if self._stopping.is_set() or not self.ready:
                raise NotReady(self.reason)
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                raise QueueFull() from None
        return job.future

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new jobs, fail the waiting ones, and wait (bounded) for the running batch; whatever
        is still queued after that (the worker may have pulled a job back out while stopping) is
        answered too, so no request waits for its deadline."""
        with self._lock:
            self._stopping.set()
            self.state, self.reason = "stopping", "the server is shutting down"
            self._fail_waiting(NotReady(self.reason))
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._fail_waiting(NotReady(self.reason))

    def _fail_waiting(self, exc: Exception) -> None:
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                return
            if job is not None and not job.future.done():
                job.future.set_exception(exc)

    def _main(self) -> None:
        try:
            self.backbone = self._load()
        except Exception as e:  # noqa: BLE001 - reported by /ready and every request, not a crash
            log.exception("model failed to load")
            self.state, self.reason = "failed", f"the model failed to load: {type(e).__name__}: {e}"
            self._fail_waiting(NotReady(self.reason))
            return
        if not self._stopping.is_set():
            self.state, self.reason = "ready", "ready"
        while not self._stopping.is_set():
            batch = self._next_batch()
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[Job]:
        """The first waiting job, then whatever else arrives within the window, up to max_batch;
        jobs already abandoned are dropped here, before the model sees them."""
        first = self.queue.get()
        if first is None:
            return []
        batch = [first]
        end = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                job = self.queue.get(timeout=max(0.0, end - time.monotonic())) if self.window_s else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stopping.set()
                break
            batch.append(job)
        live = []
        for job in batch:
            if job.live():
                live.append(job)
            elif not job.future.done():
                job.future.set_exception(Dropped("abandoned before decoding"))
        return live

    def _run(self, batch: list[Job]) -> None:
        self.batches.append(len(batch))
        self.batches_run += 1
        try:
            results = self._batch_fn(self.backbone, batch)
        except Exception as e:  # noqa: BLE001 - the batch fails, the worker goes on
            log.exception("batch failed")
            results = [e] * len(batch)
        for job, res in zip(batch, results):
            if job.future.done():
                continue
            if isinstance(res, BaseException):
                job.future.set_exception(res)
            else:
                job.future.set_result(res)
