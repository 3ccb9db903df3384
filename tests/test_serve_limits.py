"""Limits before work: every hostile upload or text (oversized, malformed, multichannel, over-long)
is refused before it costs memory or model time, with JSON ``{error, detail, field}`` naming the
file or field and no internals.

A real tiny Qwen2-Audio serves these (most requests are refused before it is reached); the audio
reader's memory bounds are checked directly with tracemalloc."""

from __future__ import annotations

import io
import json
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from serve_utils import client, wav_bytes  # noqa: F401 - client is a fixture

TEXT = "We call it bear."


def post(client, audio: bytes, text=TEXT, name="learner.wav", **data):
    return client.post("/assess", files={"audio": (name, audio, "audio/wav")}, data={"text": text, **data})


def assert_refusal(r, status, field, *words):
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail", "field"}, body
    assert body["field"] == field, body
    for w in words:
        assert w in body["detail"], body["detail"]
    for leak in ("BytesIO", "object at 0x", "<array", "Traceback", "AudioError"):
        assert leak not in r.text, r.text[:300]
    return body


# --------------------------------------------------------------------------- audio


def test_too_short_recordings_are_refused(client):
    assert_refusal(post(client, wav_bytes(seconds=1 / 16000), name="blip.wav"), 422, "audio", "blip.wav", "too short")
    body = assert_refusal(post(client, wav_bytes(seconds=0.03), name="click.wav"), 422, "audio", "click.wav", "too short")
    assert body["error"] == "audio_too_short"  # the code comes from the error's type, not its wording


def test_too_long_recording_is_refused_by_its_header(client):
    body = assert_refusal(post(client, wav_bytes(seconds=20.0, sr=8000), name="speech.wav"), 422, "audio",
                          "speech.wav", "limit is 15 s")
    assert body["error"] == "audio_too_long"


def test_wav_cut_short_is_refused(client):
    full = wav_bytes(seconds=3.5)
    r = post(client, full[: len(full) // 2], name="cut.wav")
    assert_refusal(r, 422, "audio", "cut.wav", "cut short", "3.50 s")
    assert_refusal(post(client, full[:1001], name="cut.wav"), 422, "audio", "cut.wav")


def test_not_audio_is_415_naming_the_upload(client):
    body = assert_refusal(post(client, b"RIFF....nope", name="junk.wav"), 415, "audio", "junk.wav")
    assert body["error"] == "unsupported_audio"


def test_multichannel_high_rate_flac_is_refused_before_decoding(client):
    """Regression: a 185 KB FLAC (8 channels, 192 kHz, 120 s) was decoded in full (+810 MB)."""
    flac = _silent_flac(channels=8, sr=192_000, seconds=120)
    assert len(flac) < 2_000_000
    assert_refusal(post(client, flac, name="bomb.flac"), 415, "audio", "bomb.flac", "8 channels")


def _silent_flac(channels: int, sr: int, seconds: float) -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=sr, channels=channels, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((sr, channels), dtype=np.int16)
        block[0, 0] = 3  # not all-zero
        for _ in range(int(seconds)):
            f.write(block)
    return buf.getvalue()


def test_reader_never_decodes_more_than_its_cap():
    """The header is read first; a long stereo file within the rate limit is refused before decoding
    and a long-but-allowed one is decoded only up to the cap (frames x channels)."""
    from lmm_apa.data.audio import AudioError, AudioFormatError, AudioLimits, read_upload

    limits = AudioLimits(min_seconds=0.1, max_seconds=15.0)
    bomb = _silent_flac(channels=2, sr=96_000, seconds=120)
    tracemalloc.start()
    with pytest.raises(AudioError, match="limit is 15 s"):
        read_upload(io.BytesIO(bomb), "long.flac", limits)
    with pytest.raises(AudioFormatError, match="8 channels"):
        read_upload(io.BytesIO(_silent_flac(channels=8, sr=48_000, seconds=5)), "many.flac", limits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while refusing"
    x = read_upload(io.BytesIO(wav_bytes(seconds=1.0, sr=44_100, channels=2)), "ok.wav", limits)
    assert x.dtype == np.float32 and abs(len(x) - 16_000) <= 2


# --------------------------------------------------------------------------- text and phones


def test_word_and_character_caps(client):
    body = assert_refusal(post(client, wav_bytes(), text=" ".join(["bear"] * 500)), 422, "text", "limit is")
    assert body["error"] == "text_too_long"
    r = post(client, wav_bytes(), text="x" * 1_000_000)
    assert_refusal(r, 422, "text", "limit is")
    assert len(r.content) < 2_000


def test_unknown_words_error_is_capped(client):
    text = " ".join(f"qzx{i}v" for i in range(30))
    body = assert_refusal(post(client, wav_bytes(), text=text), 422, "text", "QZX0V", "and 25 more")
    assert len(json.dumps(body)) < 600


def test_explicit_phones_must_be_arpabet(client):
    assert_refusal(post(client, wav_bytes(), text="We call", phones="<script>alert(1)</script> - K AO1 L"),
                   422, "phones", "ARPAbet", "<script>")
    assert_refusal(post(client, wav_bytes(), text="We", phones="-"), 422, "phones")
    r = post(client, wav_bytes(), text="We call", phones="w iy1 - k ao1 l")
    assert r.status_code == 200, r.text
    assert [p["phone"] for p in r.json()["words"][1]["phones"]] == ["K", "AO1", "L"]


def test_markup_stripped_and_accents_folded(client):
    r = post(client, wav_bytes(), text="<b>hello</b> world<script>alert('x')</script>")
    assert r.status_code == 200, r.text
    assert [w["word"] for w in r.json()["words"]] == ["HELLO", "WORLD"]
    r = post(client, wav_bytes(), text="Café")
    assert r.status_code == 200, r.text
    assert [w["word"] for w in r.json()["words"]] == ["CAFE"]
    assert_refusal(post(client, wav_bytes(), text="你好"), 422, "text", "English alphabet")


def test_missing_fields_name_the_field(client):
    r = client.post("/assess", data={"text": "We call"})
    assert_refusal(r, 422, "audio", "audio")
    r = client.post("/assess", files={"audio": ("a.wav", wav_bytes(), "audio/wav")})
    assert_refusal(r, 422, "text", "text")
    assert_refusal(post(client, wav_bytes(), format="xml"), 422, "format")
