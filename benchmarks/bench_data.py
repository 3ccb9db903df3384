"""Corpus-layer cost on the real SO762 mini corpus (80 utterances): reading the tree, `data stats`
(every file opened and its samples checked), audio loading with and without resampling, and the
one-off CMUdict load. Prints one JSON object.

    python benchmarks/bench_data.py [--corpus ../shared/data/speechocean762-mini]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def timed(fn, repeat: int = 3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speechocean762-mini"))
    args = ap.parse_args()

    t = time.perf_counter()
    from lmm_apa.data.lexicon import cmudict_lexicon

    cmudict_lexicon()
    cmudict_s = time.perf_counter() - t
    from lmm_apa.data.audio import load_audio
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.data.schema import Audio
    from lmm_apa.data.stats import corpus_stats

    load_s, corpus = timed(lambda: load_corpus(args.corpus))
    stats_s, stats = timed(lambda: corpus_stats(args.corpus))
    audio_s, arrays = timed(lambda: [load_audio(u.audio) for u in corpus])
    seconds = sum(len(a) for a in arrays) / 16000
    with tempfile.TemporaryDirectory() as d:  # the same audio as 44.1 kHz stereo FLAC: resampling cost
        import soxr

        paths = []
        for i, a in enumerate(arrays):
            p = Path(d) / f"{i}.flac"
            up = soxr.resample(a, 16000, 44100)
            sf.write(str(p), np.stack([up, up], axis=1), 44100)
            paths.append(p)
        resample_s, _ = timed(lambda: [load_audio(Audio(path=str(p))) for p in paths])
    print(json.dumps({
        "utterances": len(corpus), "audio_seconds": round(seconds, 1), "failed": len(stats["failed"]),
        "cmudict_first_load_s": round(cmudict_s, 3),
        "load_corpus_s": round(load_s, 4),
        "data_stats_deep_s": round(stats_s, 3),
        "load_audio_16k_wav_s": round(audio_s, 3),
        "load_audio_16k_x_realtime": round(seconds / audio_s),
        "load_audio_44k_stereo_flac_resampled_s": round(resample_s, 3),
        "load_audio_resampled_x_realtime": round(seconds / resample_s),
    }, indent=2))


if __name__ == "__main__":
    main()
