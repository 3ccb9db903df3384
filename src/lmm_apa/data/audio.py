"""Audio as every backbone wants it: float32 mono at the backbone's rate (16 kHz for both).

Why its own module: a bad recording must fail here, with the file named, not deep inside a
feature extractor as a shape error or, worse, as a silent NaN in the loss. So unreadable, empty,
all-silent and non-finite audio and audio over the backbone's length limit each raise
:class:`AudioError` (a ``ValueError``) that says which file and what is wrong.

Reading is soundfile (WAV, FLAC, ...), resampling is soxr; HF copies of SO762 arrive as arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from lmm_apa.data.schema import Audio

TARGET_SAMPLE_RATE = 16_000
SILENCE_PEAK = 1e-4  # below this peak (full scale 1.0) a recording holds no speech at all

# Longest audio each backbone's encoder takes, in seconds.
# - qwen2-audio: its Whisper-style encoder has 1500 positions after a stride-2 conv over 100 mel
#   frames/s = exactly 30 s (transformers: Qwen2AudioEncoderConfig.max_source_positions=1500,
#   WhisperFeatureExtractor chunk_length=30); longer input is truncated by the feature extractor.
# - phi4-mm: the conformer encoder has no absolute positions (relative attention bias), so there is
#   no hard cap in transformers' Phi4MultimodalFeatureExtractor; 40 s is the model card's guidance
#   for speech tasks other than summarisation. Our choice; callers may pass their own limit.
MAX_AUDIO_SECONDS = {"qwen2-audio": 30.0, "phi4-mm": 40.0}


class AudioError(ValueError):
    """A recording that cannot be used; the message names the file (or the in-memory source)."""


@dataclass
class AudioInfo:
    duration: float  # seconds
    sampling_rate: int
    channels: int
    frames: int


def _read_source(audio: Audio) -> tuple[np.ndarray, int]:
    """(samples [frames, channels] float32, native rate) from a path, encoded bytes or an array."""
    name = audio.describe()
    if audio.array is not None:
        if not audio.sampling_rate:
            raise AudioError(f"{name}: in-memory audio has no sampling_rate")
        x = np.asarray(audio.array, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        elif x.ndim == 2:
            # HF / librosa arrays are [channels, frames]; soundfile's are [frames, channels].
            x = x.T if x.shape[0] < x.shape[1] else x
        else:
            raise AudioError(f"{name}: audio array has {x.ndim} dimensions, expected 1 or 2")
        return x, int(audio.sampling_rate)
    path = _existing_file(audio)
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    return x, int(sr)


def _existing_file(audio: Audio) -> Path:
    """The audio's file, or an AudioError naming why it cannot be opened (no path, missing, 0 bytes)."""
    if not audio.path:
        raise AudioError("audio has neither a path nor an array")
    path = Path(audio.path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: audio file is empty (0 bytes)")
    return path


def audio_info(audio: Audio) -> AudioInfo:
    """Duration and format without reading the samples (soundfile's header only)."""
    if audio.array is not None:
        x, sr = _read_source(audio)
        return AudioInfo(len(x) / sr, sr, x.shape[1], len(x))
    path = _existing_file(audio)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    if info.frames <= 0:
        raise AudioError(f"{path}: audio has no samples")
    return AudioInfo(info.frames / info.samplerate, int(info.samplerate), int(info.channels), int(info.frames))


def load_audio(audio: Audio, target_sr: int | None = TARGET_SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Samples as float32 mono at ``target_sr`` (``None`` keeps the native rate).

    Raises :class:`AudioError` naming the file for: missing, empty or unreadable files, no samples,
    non-finite samples, all-silent audio (peak < 1e-4), and audio longer than ``max_seconds``
    (a backbone limit: see :data:`MAX_AUDIO_SECONDS`)."""
    name = audio.describe()
    if max_seconds is not None and audio.array is None:
        info = audio_info(audio)  # refuse a long file before reading it
        if info.duration > max_seconds:
            raise AudioError(f"{name}: audio is {info.duration:.2f} s long, over the {max_seconds:g} s limit")
    x, sr = _read_source(audio)
    if x.size == 0 or len(x) == 0:
        raise AudioError(f"{name}: audio has no samples")
    if max_seconds is not None and len(x) / sr > max_seconds:
        raise AudioError(f"{name}: audio is {len(x) / sr:.2f} s long, over the {max_seconds:g} s limit")
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: audio contains non-finite samples (NaN or inf)")
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name}: audio is all silent (peak {peak:.2e} < {SILENCE_PEAK:g})")
    if target_sr is not None and sr != target_sr:
        mono = soxr.resample(mono, sr, target_sr)
    return np.ascontiguousarray(mono, dtype=np.float32)


def decode_audio_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Encoded audio (a WAV/FLAC file's bytes, as HF datasets store them) -> (float32 samples, rate).
    Multi-channel audio is kept as [frames, channels]; :func:`load_audio` downmixes it."""
    if not data:
        raise AudioError(f"{name}: audio bytes are empty")
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{name}: unreadable audio bytes ({e})") from e
    return (x[:, 0] if x.shape[1] == 1 else x), int(sr)


def check_audio(audio: Audio, deep: bool = True, max_seconds: float | None = None) -> float:
    """Duration in seconds of a usable recording, else :class:`AudioError`.

    ``deep`` reads the samples to catch silent or non-finite audio too (what ``data stats`` does);
    without it only the header is read."""
    info = audio_info(audio)
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioError(f"{audio.describe()}: audio is {info.duration:.2f} s long, over the {max_seconds:g} s limit")
    if deep:
        load_audio(audio, target_sr=None)
    return info.duration
