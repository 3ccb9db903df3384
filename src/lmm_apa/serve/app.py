"""``lmm-apa serve``: the HTTP API and the learner page (SPEC §5, §7).

Endpoints:
- ``GET /``: the learner page (record or upload, type the text, see words and phones coloured);
- ``GET /health``: model, task, device, whether the model is loaded;
- ``POST /assess``: multipart ``audio`` (a WAV/FLAC file) + ``text`` [+ ``format`` native|azure,
  ``phones``, ``decoding``] -> the ``lmm-apa assess`` JSON. Unusable audio or text -> 422 with the reason.

The backbone is loaded once, lazily on the first request (so the page answers at once) or given to
``create_app`` already loaded (tests, embedding in another app). Requests are assessed one at a time
behind a lock: one model, one device.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import asyncio
import threading
from pathlib import Path

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def create_app(model: str | None = None, adapter: str | None = None, task: str = "full", device: str | None = None,
               backbone=None, decoding: str = "constrained"):
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import FileResponse

    from lmm_apa.prompts.tasks import get_task

    get_task(task)  # a wrong task name fails at start, not on the first request
    app = FastAPI(title="LMM-APA", description="Pronunciation assessment with fine-tuned audio-language models")
    state = {"backbone": backbone}
    lock = threading.Lock()

    def get_backbone():
        with lock:
            if state["backbone"] is None:
                from lmm_apa.infer.predict import load_model

                state["backbone"] = load_model(model, adapter, device)
            return state["backbone"]

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    def health():
        bb = state["backbone"]
        return {"status": "ok", "model": model or (bb.source if bb is not None else None), "adapter": adapter,
                "task": task, "decoding": decoding, "loaded": bb is not None,
                "arch": bb.arch if bb is not None else None}

    def run_assessment(data: bytes, filename: str, text: str, fmt: str, phones: str | None, dec: str) -> dict:
        from lmm_apa.data.audio import decode_audio_bytes
        from lmm_apa.infer.assess import assess_waveform

        wave, sr = decode_audio_bytes(data, filename)  # AudioError (a ValueError) names the upload
        if wave.ndim > 1:
            wave = wave.mean(axis=1)
        bb = get_backbone()
        with lock:
            return assess_waveform(bb, wave, sr, text, task=task, decoding=dec, phones=phones, output_format=fmt)

    @app.post("/assess")
    async def assess(
        audio: UploadFile = File(..., description="the recording (WAV/FLAC)"),
        text: str = Form(..., description="the reference text the learner read"),
        format: str = Form("native", description="native | azure"),
        phones: str | None = Form(None, description="explicit canonical phones, words separated by ' - '"),
        decoding: str | None = Form(None, description="free | constrained (default: the server's)"),
    ):
        data = await audio.read()
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(status_code=413, detail=f"upload over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
        if not text.strip():
            raise HTTPException(status_code=422, detail="text is empty: give the sentence the learner read")
        name = audio.filename or "upload"
        try:
            return await asyncio.to_thread(run_assessment, data, name, text, format, phones or None, decoding or default_decoding)
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(status_code=422, detail=str(e)) from e

    default_decoding = decoding
    return app


def run_server(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, adapter: str | None = None,
               task: str = "full", device: str | None = None) -> None:
    """Serve with uvicorn (the model loads on the first assessment)."""
    import uvicorn

    uvicorn.run(create_app(model=model, adapter=adapter, task=task, device=device), host=host, port=port)
