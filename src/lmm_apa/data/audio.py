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


class AudioFormatError(AudioError):
    """Not audio we can read at all (unknown container, unsupported layout): the server's 415."""


class AudioTooLongError(AudioError):
    """Longer than the limit (a backbone's, or the server's): the server's ``audio_too_long``."""


class AudioTooShortError(AudioError):
    """Shorter than the least that can hold a word: the server's ``audio_too_short``."""


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
            raise AudioTooLongError(f"{name}: audio is {info.duration:.2f} s long, over the {max_seconds:g} s limit")
    x, sr = _read_source(audio)
    if x.size == 0 or len(x) == 0:
        raise AudioError(f"{name}: audio has no samples")
    if max_seconds is not None and len(x) / sr > max_seconds:
        raise AudioTooLongError(f"{name}: audio is {len(x) / sr:.2f} s long, over the {max_seconds:g} s limit")
    return check_waveform(x.mean(axis=1) if x.shape[1] > 1 else x[:, 0], sr, name, target_sr)


def decode_audio_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Encoded audio (a WAV/FLAC file's bytes, as HF datasets store them) -> (float32 samples, rate).
    Multi-channel audio is kept as [frames, channels]; :func:`load_audio` downmixes it."""
    if not data:
        raise AudioError(f"{name}: audio bytes are empty")
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFormatError(f"{name}: unreadable audio bytes ({_sf_reason(e)})") from None
    return (x[:, 0] if x.shape[1] == 1 else x), int(sr)


def check_audio(audio: Audio, deep: bool = True, max_seconds: float | None = None) -> float:
    """Duration in seconds of a usable recording, else :class:`AudioError`.

    ``deep`` reads the samples to catch silent or non-finite audio too (what ``data stats`` does);
    without it only the header is read."""
    info = audio_info(audio)
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioTooLongError(f"{audio.describe()}: audio is {info.duration:.2f} s long, over the {max_seconds:g} s limit")
    if deep:
        load_audio(audio, target_sr=None)
    return info.duration


# --------------------------------------------------------------------------- uploads (the server)


@dataclass(frozen=True)
class AudioLimits:
    """What an untrusted recording may be, checked on the header before a sample is decoded.

    The caller (the server) fills ``min_seconds`` / ``max_seconds`` from the backbone's own limits;
    this module does not know backbones (data sits below models)."""

    min_seconds: float = 0.0
    max_seconds: float | None = None
    max_channels: int = 2  # a learner's microphone is mono or stereo; 8-channel uploads are refused
    min_sampling_rate: int = 8_000
    max_sampling_rate: int = 96_000

    def max_samples(self, sampling_rate: int, channels: int) -> int | None:
        """The most frames x channels a decode may produce (None: unbounded)."""
        if self.max_seconds is None:
            return None
        return int(self.max_seconds * sampling_rate + 1) * channels


_RIFF_STREAMING_SIZES = {0, 0xFFFFFFFF}  # writers that did not know the length leave these


def declared_wav_data_bytes(fileobj) -> tuple[int, int] | None:
    """(bytes the RIFF/WAVE ``data`` chunk header declares, bytes actually present after it), or
    None for other containers or a streaming header. Why: libsndfile silently clamps a truncated
    WAV to what is there, so a 1 kB upload whose header promises 3.5 s would be scored as 0.03 s."""
    start = fileobj.tell()
    try:
        head = fileobj.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = fileobj.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                if size in _RIFF_STREAMING_SIZES:
                    return None
                here = fileobj.tell()
                end = fileobj.seek(0, io.SEEK_END)
                return size, end - here
            fileobj.seek(size + (size & 1), io.SEEK_CUR)
    finally:
        fileobj.seek(start)


def _sf_reason(e: Exception) -> str:
    """libsndfile's reason without the Python object repr it embeds (``<_io.BytesIO at 0x..>``)."""
    reason = getattr(e, "error_string", None) or "format not recognised"
    return reason.rstrip(".")


def _upload_header(fileobj, name: str, limits: AudioLimits) -> sf._SoundFileInfo:
    """The header's facts, checked against ``limits``; nothing is decoded yet."""
    try:
        info = sf.info(fileobj)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFormatError(f"{name}: not a readable WAV/FLAC/OGG recording ({_sf_reason(e)})") from None
    finally:
        fileobj.seek(0)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{name}: the recording has no samples")
    if info.channels > limits.max_channels:
        raise AudioFormatError(f"{name}: {info.channels} channels; record in mono or stereo "
                               f"(at most {limits.max_channels})")
    if not limits.min_sampling_rate <= info.samplerate <= limits.max_sampling_rate:
        raise AudioFormatError(f"{name}: sample rate {info.samplerate} Hz is outside "
                               f"{limits.min_sampling_rate}-{limits.max_sampling_rate} Hz")
    declared = declared_wav_data_bytes(fileobj)
    if declared is not None and declared[0] > declared[1]:
        held = info.frames / info.samplerate  # libsndfile counts only the frames present
        promised = held * declared[0] / declared[1]  # declared[1] > 0: there are frames
        raise AudioError(f"{name}: the file is cut short: its header promises {promised:.2f} s "
                         f"but it holds {held:.2f} s (an incomplete upload?)")
    return info


def _check_duration(seconds: float, name: str, limits: AudioLimits) -> None:
    if limits.max_seconds is not None and seconds > limits.max_seconds:
        raise AudioTooLongError(f"{name}: the recording is {seconds:.1f} s long; the limit is {limits.max_seconds:g} s")
    if seconds < limits.min_seconds:
        raise AudioTooShortError(f"{name}: the recording is {seconds:.2f} s long, too short to hold a word "
                         f"(at least {limits.min_seconds:g} s)")


def read_upload(fileobj, name: str, limits: AudioLimits, target_sr: int | None = TARGET_SAMPLE_RATE) -> np.ndarray:
    """An untrusted recording (a seekable binary file object) -> float32 mono at ``target_sr``.

    Header first: format, channels, rate and duration are checked before any sample is decoded,
    and the decode itself is capped at ``limits.max_samples``, so a tiny file that claims hours of
    8-channel 192 kHz audio costs nothing. Every :class:`AudioError` names ``name`` (the upload's
    file name), never the in-memory object."""
    info = _upload_header(fileobj, name, limits)
    _check_duration(info.frames / info.samplerate, name, limits)
    cap = limits.max_samples(info.samplerate, info.channels)
    frames = info.frames if cap is None else min(info.frames, cap // info.channels)
    try:
        with sf.SoundFile(fileobj) as f:
            x = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioFormatError(f"{name}: unreadable audio ({_sf_reason(e)})") from None
    _check_duration(len(x) / info.samplerate, name, limits)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return check_waveform(mono, int(info.samplerate), name, target_sr)


def check_waveform(mono: np.ndarray, sr: int, name: str, target_sr: int | None = TARGET_SAMPLE_RATE) -> np.ndarray:
    """Finite, not silent, resampled: the sample checks shared by :func:`load_audio` (files,
    corpora) and :func:`read_upload` (the server), so both refuse the same audio with the same words.
    A NaN in any channel survives the downmix, so checking the mono signal is enough."""
    if mono.size == 0:
        raise AudioError(f"{name}: the recording has no samples")
    if not np.isfinite(mono).all():
        raise AudioError(f"{name}: audio contains non-finite samples (NaN or inf)")
    peak = float(np.max(np.abs(mono)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name}: audio is all silent (peak {peak:.2e} < {SILENCE_PEAK:g})")
    if target_sr is not None and sr != target_sr:
        mono = soxr.resample(mono, sr, target_sr)
    return np.ascontiguousarray(mono, dtype=np.float32)
