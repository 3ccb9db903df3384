"""``lmm-apa data stats``: what a corpus holds and what in it cannot be used, before any training.

Why it opens every audio file: a corrupt or silent recording found here costs a second; found in
epoch 2 of a fine-tune it costs the run. Failures from reading the corpus (bad records, unknown
words) and from its audio are listed together, each with the utterance id and the reason.
"""

from __future__ import annotations

from pathlib import Path

from lmm_apa.data.audio import MAX_AUDIO_SECONDS, AudioError, check_audio
from lmm_apa.data.corpus import detect_format, load_corpus


def corpus_stats(source: str | Path, split: str | None = None, deep: bool = True) -> dict:
    """One JSON-able summary: utterances (readable, audio included), labelled, failed, hours,
    mispronunciation labels, ... A path that is not a corpus raises ValueError naming it.

    ``deep`` reads the samples (silent / non-finite audio); without it only file headers."""
    fmt = detect_format(source)
    corpus = load_corpus(source, split=split)
    failed = [{"id": f.id, "reason": f.reason} for f in corpus.failures]
    durations: list[float] = []
    readable = []
    for u in corpus.utterances:
        try:
            durations.append(check_audio(u.audio, deep=deep))
            readable.append(u)
        except AudioError as e:
            failed.append({"id": u.id, "reason": str(e)})
    splits: dict[str, int] = {}
    for u in readable:
        splits[u.split or "-"] = splits.get(u.split or "-", 0) + 1
    return {
        "source": str(source),
        "format": fmt,
        "split": split,
        "utterances": len(readable),
        "labelled": sum(u.labelled for u in readable),
        "with_word_scores": sum(u.has_word_scores for u in readable),
        "with_phone_scores": sum(u.has_phone_scores for u in readable),
        "synthetic_labels": sum(u.labelled and u.synthetic for u in readable),
        # phone-level mispronunciation labels (what mdd trains on and is scored against)
        "with_mispronunciations": sum(any(w.mispronunciations for w in u.words) for u in readable),
        "mispronunciations": sum(len(w.mispronunciations) for u in readable for w in u.words),
        "failed": failed,
        "hours": round(sum(durations) / 3600, 4),
        "max_seconds": round(max(durations), 3) if durations else None,
        "over_backbone_limit": {k: sum(d > v for d in durations) for k, v in MAX_AUDIO_SECONDS.items()},
        "speakers": len({u.speaker for u in readable if u.speaker}),
        "words": sum(len(u.words) for u in readable),
        "splits": splits,
    }
