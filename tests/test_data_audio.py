"""Audio loading: mono float32 at 16 kHz, and a clear error naming the file for each bad case."""

import numpy as np
import pytest
import soundfile as sf
from fixtures_data import tone, write_tone

from lmm_apa.data.audio import MAX_AUDIO_SECONDS, AudioError, audio_info, check_audio, load_audio
from lmm_apa.data.schema import Audio


def test_stereo_44k_flac_is_downmixed_and_resampled(tmp_path):
    p = tmp_path / "a.flac"
    left = tone(1.0, 440.0, sr=44_100)
    sf.write(str(p), np.stack([left, -0.5 * left], axis=1), 44_100)
    x = load_audio(Audio(path=str(p)))
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16_000) <= 2
    # downmix is the mean of the channels: 0.25 * left, peak 0.3 * 0.25
    assert np.max(np.abs(x)) == pytest.approx(0.075, rel=0.05)


def test_array_input_and_native_rate(tmp_path):
    arr = tone(0.5, 220.0, sr=8_000)
    x = load_audio(Audio(array=arr, sampling_rate=8_000), target_sr=None)
    np.testing.assert_allclose(x, arr)
    assert len(load_audio(Audio(array=arr, sampling_rate=8_000))) == 8_000
    # [channels, frames] arrays (HF multi-channel) are downmixed too
    assert load_audio(Audio(array=np.stack([arr, arr]), sampling_rate=8_000), target_sr=None).shape == (4_000,)
    with pytest.raises(AudioError, match="no sampling_rate"):
        load_audio(Audio(array=arr))


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "not found"),
        ("empty", r"empty \(0 bytes\)"),
        ("corrupt", "unreadable audio"),
        ("silent", "all silent"),
        ("nan", "non-finite"),
    ],
)
def test_bad_audio_raises_naming_the_file(tmp_path, case, message):
    p = tmp_path / f"{case}.wav"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "corrupt":
        p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio" * 3)
    elif case == "silent":
        sf.write(str(p), np.zeros(16_000, dtype=np.float32), 16_000)
    elif case == "nan":
        x = tone(0.2)
        x[10] = np.nan
        sf.write(str(p), x, 16_000, subtype="FLOAT")
    with pytest.raises(AudioError, match=message) as e:
        load_audio(Audio(path=str(p)))
    assert str(p) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_length_limit_per_backbone(tmp_path):
    assert MAX_AUDIO_SECONDS["qwen2-audio"] == 30.0
    p = write_tone(tmp_path / "long.wav", seconds=31.0)
    with pytest.raises(AudioError, match=r"31\.00 s long, over the 30 s limit"):
        load_audio(Audio(path=str(p)), max_seconds=MAX_AUDIO_SECONDS["qwen2-audio"])
    assert len(load_audio(Audio(path=str(p)), max_seconds=MAX_AUDIO_SECONDS["phi4-mm"])) == 31 * 16_000
    with pytest.raises(AudioError, match="over the 1 s limit"):
        load_audio(Audio(array=tone(2.0), sampling_rate=16_000), max_seconds=1.0)


def test_info_and_check(tmp_path):
    p = write_tone(tmp_path / "t.wav", seconds=0.75, sr=22_050, channels=2)
    info = audio_info(Audio(path=str(p)))
    assert (info.sampling_rate, info.channels) == (22_050, 2) and info.duration == pytest.approx(0.75, abs=1e-3)
    assert check_audio(Audio(path=str(p))) == pytest.approx(0.75, abs=1e-3)
    silent = tmp_path / "s.wav"
    sf.write(str(silent), np.zeros(800, dtype=np.float32), 16_000)
    assert check_audio(Audio(path=str(silent)), deep=False) == pytest.approx(0.05)  # header only
    with pytest.raises(AudioError, match="all silent"):
        check_audio(Audio(path=str(silent)))
