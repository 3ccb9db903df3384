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
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SO762_MINI = REPO.parent / "shared" / "data" / "speechocean762-mini"
REAL_WAV = SO762_MINI / "WAVE" / "SPEAKER0457" / "004570167.WAV"  # "ABOUT TO GO TO LUNCH"
# The background-networking flags keep Chromium from calling home on a closed network; the fake media
# ones give it a microphone (a beep) that needs no permission prompt, so the Record path runs too.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
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
    import uvicorn

    from lmm_apa.infer.predict import load_model
    from lmm_apa.serve.app import create_app

    bb = load_model(str(tiny_qwen2_audio), device="cpu")
    app = create_app(model=str(tiny_qwen2_audio), backbone=bb, task="full")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser, server_url):
    """A fresh page on the learner UI; fails the test on any uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(20_000)
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
    """The Record path: MediaRecorder (Chromium's fake microphone) -> Web Audio decode -> the page's own
    WAV encoder -> /assess. The server decodes that WAV, so a broken encoder fails here."""
    page.locator("#rec").click()
    page.wait_for_function("() => document.getElementById('rec').textContent.includes('Stop')")
    page.wait_for_timeout(1200)
    page.locator("#rec").click()
    page.wait_for_function("() => !document.getElementById('go').disabled")
    assert page.locator("#status").inner_text() == "Ready: press Assess."
    header = page.evaluate("""async () => {
        const b = new Uint8Array(await audioBlob.slice(0, 44).arrayBuffer());
        const v = new DataView(b.buffer);
        return {riff: String.fromCharCode(...b.slice(0, 4)), wave: String.fromCharCode(...b.slice(8, 12)),
                channels: v.getUint16(22, true), rate: v.getUint32(24, true), bits: v.getUint16(34, true),
                size: audioBlob.size};
    }""")
    assert header["riff"] == "RIFF" and header["wave"] == "WAVE"
    assert header["channels"] == 1 and header["bits"] == 16 and header["rate"] >= 8000
    assert header["size"] > 44 + 2 * header["rate"] * 0.5  # over half a second of samples
    page.locator("#text").fill("Bear.")  # one word: the decoding, not the text, is what costs time here
    page.locator("#go").click()
    page.locator("#result").wait_for(state="visible")
    assert page.locator("#status").inner_text() == "Done."
    assert page.locator("#words .word .w").all_inner_texts() == ["BEAR"]
