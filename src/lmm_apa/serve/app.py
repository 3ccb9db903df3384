"""``lmm-apa serve``: the HTTP API and the learner page, hardened for a classroom.

Endpoints:
- ``GET /``: the learner page (record or upload, type the text, see words and phones coloured);
- ``GET /health``: alive (and what is loaded, the queue, the limits);
- ``GET /ready``: 200 once the model is loaded, 503 with the reason before that or after a failed load;
- ``POST /assess``: multipart ``audio`` (WAV/FLAC/OGG) + ``text`` [+ ``format`` native|azure, ``phones``,
  ``decoding``] -> the ``lmm-apa assess`` JSON.

Every refusal is JSON ``{error, detail, field}`` (413 too large, 415 not audio, 422 unusable audio or
text, 401 no key, 403 foreign page, 503 busy or not ready, 504 past the deadline). The work a request
may cause is bounded before it is done: body size while streaming (``guard``), audio header before
decoding (``lmm_apa.data.audio.read_upload``), words and characters of the text (``text``). The model is
owned by one worker thread that decodes requests in dynamic batches (``worker``).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lmm_apa.infer.assess import FORMATS
from lmm_apa.infer.generate import DECODINGS
from lmm_apa.serve.errors import ApiError, install_error_handlers, public_message
from lmm_apa.serve.guard import RETRY_AFTER_S
from lmm_apa.serve.text import TextLimits
from lmm_apa.serve.worker import Dropped, Job, ModelWorker, NotReady, QueueFull, assess_jobs

STATIC = Path(__file__).parent / "static"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
API_KEY_ENV = "LMM_APA_API_KEY"
log = logging.getLogger("lmm_apa.serve")


@dataclass
class ServeOptions:
    """What a school running the server may tune; the defaults are for a classroom of ~32 learners."""

    # A class of 32 fits in the queue instead of being told to come back, and is decoded in batches of
    # 16 (benchmarks/bench_serve.py, tiny model, 2 CPU cores, 32 clients, both with a 32-slot queue:
    # batches of 16 gave 2.7x the unbatched throughput, batches of 8 2.4x; a 16-slot queue answered
    # ~200 503s per run). Measured on CPU only: on a GPU a batch of 16 of a 7 B model holds ~2x the
    # KV cache of a batch of 8, so a small GPU may need a lower --max-batch.
    queue_size: int = 32  # requests waiting for the model; beyond: 503 + Retry-After
    max_batch: int = 16  # requests decoded together (1: no batching)
    batch_window_s: float = 0.01  # how long the worker waits for more requests to batch
    request_timeout_s: float = 60.0  # a request not answered by then gets 504
    max_upload_bytes: int = 20 * 1024 * 1024
    text: TextLimits = field(default_factory=TextLimits)
    api_key: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    cors_origins: tuple[str, ...] = ()
    docs: bool = False  # /docs loads Swagger UI from a CDN (blank offline): off unless asked for
    shutdown_timeout_s: float = 10.0


def create_app(model: str | None = None, adapter: str | None = None, task: str = "full", device: str | None = None,
               backbone=None, decoding: str = "constrained", options: ServeOptions | None = None, batch_fn=None):
    """The app. The model loads at once in the worker thread (``backbone`` may be given already
    loaded: tests, embedding); ``batch_fn`` replaces the real batch decode (concurrency tests)."""
    from fastapi import FastAPI

    from lmm_apa.prompts.tasks import get_task

    get_task(task)  # a wrong task name fails at start, not on the first request
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    opts = options or ServeOptions()

    def load():
        if backbone is not None:
            return backbone
        from lmm_apa.models.loading import load_model

        return load_model(model, adapter, device)

    worker = ModelWorker(load, batch_fn or assess_jobs(task), max_batch=opts.max_batch, queue_size=opts.queue_size,
                         window_s=opts.batch_window_s if opts.max_batch > 1 else 0.0)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(worker.stop, opts.shutdown_timeout_s)

    app = FastAPI(title="LMM-APA", description="Pronunciation assessment with fine-tuned audio-language models "
                  "(Wang et al. 2025; Ahn & Nam 2025)", docs_url="/docs" if opts.docs else None, redoc_url=None,
                  lifespan=lifespan)
    app.state.worker, app.state.options = worker, opts
    install_error_handlers(app)
    _install_middleware(app, worker, opts)
    _add_info_routes(app, worker, opts, model, adapter, task, decoding)
    _add_assess_route(app, worker, opts, decoding)
    worker.start()
    return app


def _install_middleware(app, worker: ModelWorker, opts: ServeOptions) -> None:
    """Innermost first: the scoring guard, then CORS (only with --cors-origin), then the Host check."""
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from lmm_apa.serve.guard import GuardConfig, ScoringGuard

    guard = GuardConfig(max_body_bytes=opts.max_upload_bytes + 64 * 1024, api_key=opts.api_key,
                        cors_origins=opts.cors_origins, ready=lambda: (worker.ready, worker.reason),
                        has_room=worker.has_room)
    app.state.guard = guard
    app.add_middleware(ScoringGuard, config=guard)
    if opts.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization"], max_age=600)
    if opts.allowed_hosts and "*" not in opts.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(opts.allowed_hosts))


def _add_info_routes(app, worker: ModelWorker, opts: ServeOptions, model, adapter, task, decoding) -> None:
    from fastapi.responses import FileResponse, JSONResponse

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    def health():
        """Alive; what is loaded (by name only: /health is public, the server's folders are not); how busy."""
        bb = worker.backbone
        return {"status": "ok", "state": worker.state, "loaded": worker.ready,
                "model": public_name(model or (bb.source if bb is not None else None)), "adapter": public_name(adapter),
                "task": task,
                "decoding": decoding, "arch": getattr(bb, "arch", None), "auth_required": opts.api_key is not None,
                "queue": {"waiting": worker.queue.qsize(), "size": opts.queue_size, "max_batch": opts.max_batch,
                          "refused_busy": app.state.guard.refused["busy"]},
                "limits": _public_limits(worker, opts)}

    @app.get("/ready")
    def ready():
        """200 once the model is loaded; 503 with the reason before that or after a failed load."""
        if worker.ready:
            return {"ready": True}
        return JSONResponse({"error": "not_ready", "detail": worker.reason, "field": None}, status_code=503,
                            headers={"Retry-After": "10"})


def _audio_limits(worker: ModelWorker):
    from lmm_apa.data.audio import AudioLimits

    bb = worker.backbone
    return AudioLimits(min_seconds=float(bb.min_audio_seconds), max_seconds=float(bb.max_audio_seconds))


def _public_limits(worker: ModelWorker, opts: ServeOptions) -> dict:
    out = {"max_upload_mb": opts.max_upload_bytes / (1024 * 1024), "max_words": opts.text.max_words,
           "max_chars": opts.text.max_chars, "timeout_s": opts.request_timeout_s}
    if worker.ready:
        lim = _audio_limits(worker)
        out.update(min_seconds=lim.min_seconds, max_seconds=lim.max_seconds)
    return out


def _read_audio(upload, limits, sampling_rate: int):
    """The upload's samples, or the ApiError a client can act on (415 not audio, 422 unusable)."""
    from lmm_apa.data.audio import AudioError, AudioFormatError, AudioTooLongError, AudioTooShortError, read_upload

    name = Path(upload.filename or "upload").name[:120] or "upload"
    try:
        return read_upload(upload.file, name, limits, target_sr=sampling_rate)
    except AudioFormatError as e:
        raise ApiError(415, "unsupported_audio", public_message(str(e)), "audio") from None
    except AudioError as e:
        code = ("audio_too_long" if isinstance(e, AudioTooLongError) else
                "audio_too_short" if isinstance(e, AudioTooShortError) else "bad_audio")
        raise ApiError(422, code, public_message(str(e)), "audio") from None


def _add_assess_route(app, worker: ModelWorker, opts: ServeOptions, default_decoding: str) -> None:
    from fastapi import File, Form, Request, UploadFile

    from lmm_apa.serve.text import check_phones, clean_text, reference_words

    @app.post("/assess")
    async def assess(
        request: Request,
        audio: UploadFile = File(..., description="the recording (WAV/FLAC/OGG)"),
        text: str = Form(..., description="the reference text the learner read"),
        format: str = Form("native", description="native | azure"),
        phones: str | None = Form(None, description="explicit canonical phones (ARPAbet), words separated by ' - '"),
        decoding: str | None = Form(None, description="free | constrained (default: the server's)"),
    ):
        if format not in FORMATS:
            raise ApiError(422, "invalid", f"format must be one of {', '.join(FORMATS)}", "format")
        dec = decoding or default_decoding
        if dec not in DECODINGS:
            raise ApiError(422, "invalid", f"decoding must be one of {', '.join(DECODINGS)}", "decoding")
        plain = clean_text(text, opts.text)
        checked_phones = check_phones(phones, opts.text)
        reference = await asyncio.to_thread(reference_words, plain, checked_phones)  # unknown words: 422 before audio work
        if not worker.ready:
            raise ApiError(503, "not_ready", worker.reason, None, headers={"Retry-After": "10"})
        sr = worker.backbone.sampling_rate
        wave = await asyncio.to_thread(_read_audio, audio, _audio_limits(worker), sr)
        job = Job(wave, sr, plain, checked_phones, dec, deadline=time.monotonic() + opts.request_timeout_s,
                  reference=reference)
        result = await _submit_and_wait(request, worker, job, opts)
        if result is None:  # the client left: nobody reads this
            from fastapi.responses import Response

            return Response(status_code=499)
        if format == "azure":
            from lmm_apa.infer.azure import to_azure

            return to_azure(result)
        return result


async def _submit_and_wait(request, worker: ModelWorker, job: Job, opts: ServeOptions):
    """Queue the job and wait for it: 503 when full, 504 past the deadline, None when the client left."""
    try:
        future = asyncio.wrap_future(worker.submit(job))
    except QueueFull:
        request.app.state.guard.refused["busy"] += 1
        raise ApiError(503, "busy", "the server is busy; try again in a few seconds", None,
                       headers={"Retry-After": str(RETRY_AFTER_S)}) from None
    except NotReady as e:
        raise ApiError(503, "not_ready", str(e), None, headers={"Retry-After": "10"}) from None
    while not future.done():
        await asyncio.wait({future}, timeout=0.1)
        if future.done():
            break
        if time.monotonic() > job.deadline:
            job.abandoned.set()
            raise ApiError(504, "timeout", f"no answer within {opts.request_timeout_s:g} s; the server is "
                           "overloaded, try again later", None)
        if await request.is_disconnected():
            job.abandoned.set()
            return None
    try:
        return future.result()
    except Dropped:
        raise ApiError(504, "timeout", f"no answer within {opts.request_timeout_s:g} s", None) from None
    except NotReady as e:
        raise ApiError(503, "not_ready", str(e), None) from None
    except ValueError as e:
        raise ApiError(422, "unusable", public_message(str(e)), None) from None
    except Exception:  # noqa: BLE001 - the log has it; the client gets no internals
        log.exception("assessment failed")
        raise ApiError(500, "internal", "the assessment failed; the server log has the details", None) from None


def public_name(source: str | None) -> str | None:
    """A model or adapter as /health may show it: a hub id ("Qwen/Qwen2-Audio-7B-Instruct") as is,
    a local folder by its last part only (the server's file layout is nobody's business)."""
    if not source:
        return source
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or source.startswith((".", "~")) or path.exists() or source.count("/") > 1
    return path.name if looks_local else source


def listed(values) -> tuple[str, ...]:
    """``--allowed-hosts a,b --allowed-hosts c`` -> ("a", "b", "c"): repeated or comma-separated."""
    return tuple(v.strip() for value in values or () for v in value.split(",") if v.strip())


def resolve_api_key(flag: str | None) -> str | None:
    """The API key: ``--api-key``, else the ``LMM_APA_API_KEY`` environment variable (which keeps it
    out of the process list), else none (no key required)."""
    import os

    return flag or os.environ.get(API_KEY_ENV) or None


def run_server(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, adapter: str | None = None,
               task: str = "full", device: str | None = None, options: ServeOptions | None = None) -> None:
    """Serve with uvicorn. SIGTERM stops accepting at once and ends within ``shutdown_timeout_s``
    (uvicorn's graceful shutdown timeout; a decode still running is abandoned with the process)."""
    import uvicorn

    opts = options or ServeOptions()
    if host not in LOOPBACK_HOSTS and opts.allowed_hosts == LOOPBACK_HOSTS:
        log.warning("serving on %s with only loopback Host names allowed: pass --allowed-hosts", host)
    app = create_app(model=model, adapter=adapter, task=task, device=device, options=opts)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=max(1, int(opts.shutdown_timeout_s)),
                limit_concurrency=max(64, 4 * (opts.queue_size + opts.max_batch)), log_level="info")
