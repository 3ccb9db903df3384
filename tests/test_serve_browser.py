"""The learner page in a real (headless) Chromium against the real server.

``test_serve_app.py`` checks the HTTP API; this checks what a learner actually sees: the page's
JavaScript uploads a recording, calls ``/assess`` and draws the scores, and an unusable upload turns
into a readable message instead of a broken page. The server is uvicorn on a free localhost port in a
background thread, serving a tiny random Qwen2-Audio (so only structure and ranges are asserted).

Needs Debian's Chromium (``/usr/bin/chromium``, or ``LMM_APA_CHROMIUM``) and the ``playwright``
package (its own browser downloads are not used). Where they are missing the tests skip with the
reason, except under ``CI=1`` (set by ``.ci/run``, which installs Chromium) where that is a failure.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_utils import running_server

REPO = Path(__file__).resolve().parents[1]
SO762_MINI = REPO.parent / "shared" / "data" / "speechocean762-mini"
REAL_WAV = SO762_MINI / "WAVE" / "SPEAKER0457" / "004570167.WAV"  # "ABOUT TO GO TO LUNCH"
# The background-networking flags keep Chromium from calling home on a closed network; the fake media
# ones give it a microphone (a beep) that needs no permission prompt, so the Record path runs too.
# With the shared mini corpus present, the fake microphone plays a real learner's recording (once:
# %noloop) instead of Chromium's beep; the file is read where it lies, never copied into the repo.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
if REAL_WAV.exists():
    CHROMIUM_ARGS.append(f"--use-file-for-fake-audio-capture={REAL_WAV}%noloop")
NUMBER = re.compile(r"^\d+(\.\d)?$")


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"CI=1 but {reason}: .ci/run is meant to provide it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    exe = os.environ.get("LMM_APA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        _missing(f"no Chromium at {exe} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server_url(tiny_qwen2_audio):
    """The real app under uvicorn on 127.0.0.1:<free port>, stopped after the module."""
    from lmm_apa.models.loading import load_model
    from lmm_apa.serve.app import create_app

    bb = load_model(str(tiny_qwen2_audio), device="cpu")
    with running_server(create_app(model=str(tiny_qwen2_audio), backbone=bb, task="full")) as base:
        yield base + "/"


@pytest.fixture
def page(browser, server_url):
    """A fresh page on the learner UI; fails the test on any uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(120_000)  # a loaded 2-core machine decodes slowly
    pg.goto(server_url)
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _recording(tmp_path: Path) -> tuple[Path, str, list[str]]:
    """A real SO762 recording when the shared mini corpus is here, else a synthetic tone."""
    if REAL_WAV.exists():
        return REAL_WAV, "About to go to lunch.", ["ABOUT", "TO", "GO", "TO", "LUNCH"]
    t = np.arange(int(1.0 * 16000)) / 16000
    path = tmp_path / "learner.wav"
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path, "We call it bear.", ["WE", "CALL", "IT", "BEAR"]


def _score(text: str) -> float:
    assert NUMBER.match(text), f"not a score: {text!r}"
    value = float(text)
    assert 0 <= value <= 10, f"score {value} outside 0-10"
    return value


def test_page_renders_with_its_form(page):
    assert "LMM-APA" in page.title()
    assert page.locator("h1").inner_text() == "Pronunciation practice"
    assert page.locator("#text").is_visible() and page.locator("#text").input_value()
    assert page.locator("#file").get_attribute("type") == "file"
    assert page.locator("#rec").is_visible()
    assert page.locator("#go").is_disabled()  # nothing to assess yet
    assert page.locator("#result").is_hidden()


def test_upload_assess_and_see_scores(page, tmp_path):
    wav, text, words = _recording(tmp_path)
    page.locator("#file").set_input_files(str(wav))
    assert page.locator("#go").is_enabled() and page.locator("#player").is_visible()
    page.locator("#text").fill(text)
    page.locator("#go").click()
    page.locator("#result").wait_for(state="visible")
    assert page.locator("#status").inner_text() == "Done."
    assert "status-error" not in (page.locator("#status").get_attribute("class") or "")

    # Sentence cards: the five SO762 aspects, each a number on 0-10, coloured by band.
    cards = page.locator("#sentence .card")
    labels = [cards.nth(i).locator(".k").inner_text().lower() for i in range(cards.count())]
    assert labels == ["accuracy", "fluency", "prosody", "completeness", "total"]
    for i in range(cards.count()):
        _score(cards.nth(i).locator(".v").inner_text())
        assert re.search(r"\b(good|mid|bad)\b", cards.nth(i).get_attribute("class"))

    # One row per word of the text, each with its accuracy and its canonical phones, each phone scored.
    rows = page.locator("#words .word")
    assert [rows.nth(i).locator(".w").inner_text() for i in range(rows.count())] == words
    for i in range(rows.count()):
        meta = rows.nth(i).locator(".meta").inner_text()
        acc = re.search(r"acc ([\d.]+)", meta)
        assert acc, f"no accuracy in {meta!r}"
        _score(acc.group(1))
        assert "stress" in meta
        phones = rows.nth(i).locator(".ph")
        assert phones.count() >= 1
        for j in range(phones.count()):
            title = phones.nth(j).get_attribute("title")
            m = re.fullmatch(r"(\w+): ([\d.]+) / 10", title or "")
            assert m and m.group(1) == phones.nth(j).inner_text(), title
            _score(m.group(2))
    assert '"parse_ok": true' in page.locator("#raw").text_content()
    page.screenshot(path=str(tmp_path / "learner_page_result.png"), full_page=True)

    # A failed second try must not leave the first result on screen beside the error.
    junk = tmp_path / "notes.txt"
    junk.write_text("not audio")
    page.locator("#file").set_input_files(str(junk))
    page.locator("#go").click()
    page.wait_for_function("() => document.getElementById('status').className === 'status-error'")
    assert page.locator("#result").is_hidden()


def test_bad_upload_shows_a_readable_error(page, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a recording\n")
    page.locator("#file").set_input_files(str(junk))
    page.locator("#go").click()
    status = page.locator("#status")
    page.wait_for_function("() => document.getElementById('status').className === 'status-error'")
    message = status.inner_text()
    assert "notes.txt" in message and "{" not in message, message  # names the file, not raw JSON
    assert page.locator("#result").is_hidden()
    assert page.locator("#go").is_enabled()  # the learner can pick another file and retry

    # Empty text: the server's reason is shown the same way.
    page.locator("#file").set_input_files(str(_recording(tmp_path)[0]))
    page.locator("#text").fill("   ")
    page.locator("#go").click()
    page.wait_for_function("() => document.getElementById('status').className === 'status-error'")
    assert "text is empty" in status.inner_text()
    page.screenshot(path=str(tmp_path / "learner_page_error.png"), full_page=True)


def test_non_json_server_error_is_readable(page, tmp_path):
    """A crash or a proxy answers plain text or HTML, not FastAPI's JSON: the page still says what happened."""
    page.route("**/assess", lambda route: route.fulfill(status=502, content_type="text/html",
                                                       body="<html><body>Bad Gateway</body></html>"))
    page.locator("#file").set_input_files(str(_recording(tmp_path)[0]))
    page.locator("#go").click()
    page.wait_for_function("() => document.getElementById('status').className === 'status-error'")
    assert page.locator("#status").inner_text().startswith("Server error 502")
    assert page.locator("#go").is_enabled()


def test_record_from_microphone_then_assess(page):
    """The Record path with Chromium's fake microphone playing a real Speechocean762 recording:
    MediaRecorder -> Web Audio decode -> the page's own WAV encoder -> /assess -> the rendered result.
    The recorded WAV is compared with the source file, so a broken encoder (or a beep) fails here."""
    if not REAL_WAV.exists():
        _missing(f"the Speechocean762 mini corpus is not at {SO762_MINI}")
    page.locator("#rec").click()
    page.wait_for_function("() => document.getElementById('rec').textContent.includes('Stop')")
    assert page.locator("#rec").get_attribute("aria-pressed") == "true"
    page.wait_for_timeout(3200)  # the file is 2.7 s
    page.locator("#rec").click()
    page.wait_for_function("() => !document.getElementById('go').disabled")
    assert page.locator("#status").inner_text() == "Ready: press Assess."
    wav = bytes(page.evaluate("async () => Array.from(new Uint8Array(await audioBlob.arrayBuffer()))"))
    recorded, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert recorded.ndim == 1 and rate >= 8000 and len(recorded) / rate > 2.5
    assert _similarity(recorded, rate, REAL_WAV) > 0.5, "the recording is not the file the microphone played"
    page.locator("#text").fill("About to go to lunch.")
    page.locator("#go").click()
    page.locator("#result").wait_for(state="visible", timeout=120_000)
    assert page.locator("#status").inner_text() == "Done."
    assert page.locator("#words .word .w").all_inner_texts() == ["ABOUT", "TO", "GO", "TO", "LUNCH"]
    for v in page.locator("#sentence .card .v").all_inner_texts():
        _score(v)
    assert page.locator("#history").is_visible() and page.locator("#attempts li").count() == 1


def _similarity(recorded: np.ndarray, rate: int, source: Path) -> float:
    """Peak normalised cross-correlation of the envelopes (10 ms frames) of two recordings."""
    import soxr

    ref, ref_rate = sf.read(str(source), dtype="float32")
    rec = soxr.resample(recorded, rate, ref_rate)

    def envelope(x):
        frames = len(x) // 160
        e = np.sqrt((x[: frames * 160].reshape(frames, 160) ** 2).mean(axis=1))
        return (e - e.mean()) / (e.std() + 1e-9)

    a, b = envelope(ref), envelope(rec)
    corr = np.correlate(b, a, mode="valid" if len(b) >= len(a) else "full") / len(a)
    return float(corr.max())


CANNED = {"text": "WE CALL", "task": "full", "decoding": "constrained", "output": "", "parse_ok": True,
          "sentence": {"accuracy": 6, "fluency": 6, "prosodic": 6, "completeness": 10, "total": 6},
          "words": [{"index": 0, "word": "WE", "scores": {"accuracy": 7, "stress": 10, "total": 7},
                     "phones": [{"phone": "W", "score": 8}, {"phone": "IY1", "score": 6}]}]}


def _answer(route, status: int, body: dict):
    import json

    route.fulfill(status=status, content_type="application/json", body=json.dumps(body),
                  headers={"Retry-After": "2"} if status == 503 else {})


@pytest.mark.parametrize("status, code, detail, expect", [
    (503, "busy", "the server is busy; try again in a few seconds", "busy with other learners"),
    (504, "timeout", "no answer within 60 s", "took too long"),
    (422, "audio_too_long", "learner.wav: the recording is 31.0 s long; the limit is 15 s", "too long"),
    (413, "upload_too_large", "the upload is over 20 MB", "too big"),
])
def test_refusals_shown_in_plain_words(page, tmp_path, status, code, detail, expect):
    page.route("**/assess", lambda route: _answer(route, status, {"error": code, "detail": detail, "field": None}))
    page.locator("#file").set_input_files(str(_recording(tmp_path)[0]))
    page.locator("#go").click()
    page.wait_for_function("() => document.getElementById('status').className === 'status-error'")
    message = page.locator("#status").inner_text()
    assert expect in message and "{" not in message and "error" not in message, message
    assert page.locator("#go").is_enabled()


def test_attempts_kept_per_sentence_with_a_trend(page, tmp_path, server_url):
    totals = iter([5.0, 7.5])

    def answer(route):
        body = dict(CANNED, sentence_expected={**CANNED["sentence"], "total": next(totals)})
        _answer(route, 200, body)

    page.route("**/assess", answer)
    page.locator("#text").fill("We call")
    page.locator("#file").set_input_files(str(_recording(tmp_path)[0]))
    for _ in range(2):
        page.locator("#go").click()
        page.wait_for_function("() => document.getElementById('status').textContent === 'Done.'")
        page.wait_for_function("() => !document.getElementById('go').disabled")
    assert page.locator("#attempts li").count() == 2
    assert "up 2.5" in page.locator("#trend").inner_text()
    page.reload()  # kept in the browser, per sentence
    page.locator("#text").fill("We call")
    page.locator("#text").dispatch_event("input")
    assert page.locator("#attempts li").count() == 2
    page.locator("#text").fill("Another sentence")
    page.locator("#text").dispatch_event("input")
    assert page.locator("#history").is_hidden()


def test_usable_by_keyboard(page, tmp_path):
    page.route("**/assess", lambda route: _answer(route, 200, dict(CANNED)))
    page.locator("#text").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "rec"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('rec').getAttribute('aria-pressed') === 'true'")
    page.wait_for_timeout(800)
    page.keyboard.press("Enter")
    page.wait_for_function("() => !document.getElementById('go').disabled")
    for _ in range(20):  # through the file input and the player's own controls
        if page.evaluate("document.activeElement.id") == "go":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "go"
    page.keyboard.press("Enter")
    page.locator("#result").wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "result"  # the result is announced and in focus
    assert page.locator("#status").get_attribute("aria-live") == "polite"
