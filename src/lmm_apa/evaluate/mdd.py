"""Seed 002's MDD evaluation over a corpus: WER of the word transcript against the reference text,
PER of the phone transcript against the phones the annotators heard, mispronunciation detection
precision / recall / F1, and the PER-vs-accuracy correlation of its figure 5 (human -0.45,
model -0.35: a model whose scores mean something gives lower accuracy where it hears more errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmm_apa.data.schema import Utterance
from lmm_apa.evaluate.metrics import (
    detection_scores,
    error_rate,
    mdd_counts,
    normalise_phones,
    normalise_text,
    score_metrics,
)


def heard_phones(utt: Utterance) -> tuple[list[str], list[str | None]]:
    """Canonical phones and, per canonical phone, what the annotators heard (None: deleted)."""
    canonical, heard = [], []
    for w in utt.words:
        said: list[str | None] = list(w.phones)
        for m in w.mispronunciations:
            if 0 <= m.index < len(said):
                said[m.index] = None if m.pronounced in ("<DEL>", "<del>", "") else m.pronounced
        canonical.extend(w.phones)
        heard.extend(said)
    return canonical, heard


@dataclass
class MddAccumulator:
    """Collects one utterance at a time; ``result()`` gives the corpus figures."""

    strip_stress: bool = True
    word_refs: list = field(default_factory=list)
    word_hyps: list = field(default_factory=list)
    phone_refs: list = field(default_factory=list)
    phone_hyps: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"ta": 0, "fr": 0, "fa": 0, "tr": 0, "correct_diagnosis": 0})
    per_utterance: dict = field(default_factory=dict)  # id -> PER of that utterance

    def add(self, utt: Utterance, word_transcript: str | None, phone_transcript: str | None) -> None:
        if word_transcript is not None:
            self.word_refs.append(normalise_text(utt.text).split())
            self.word_hyps.append(normalise_text(word_transcript).split())
        if phone_transcript is not None and utt.words and all(w.phones for w in utt.words):
            canonical, heard = heard_phones(utt)
            ref = normalise_phones([h for h in heard if h is not None], self.strip_stress)
            hyp = normalise_phones(phone_transcript, self.strip_stress)
            self.phone_refs.append(ref)
            self.phone_hyps.append(hyp)
            one = error_rate([ref], [hyp])["rate"]
            if one is not None:
                self.per_utterance[utt.id] = one
            c = mdd_counts(canonical, heard, hyp, self.strip_stress)
            for k in self.counts:
                self.counts[k] += c[k]

    def result(self) -> dict:
        w = error_rate(self.word_refs, self.word_hyps)
        p = error_rate(self.phone_refs, self.phone_hyps)
        out = {"wer": w["rate"], "per": p["rate"], **detection_scores(self.counts),
               "n": max(len(self.word_refs), len(self.phone_refs)),
               "n_words": w["n"], "n_phones": p["n"], "counts": dict(self.counts)}
        tr = self.counts["tr"]
        out["diagnosis_accuracy"] = self.counts["correct_diagnosis"] / tr if tr else None
        return out


def per_vs_accuracy(per_by_id: dict[str, float], accuracy_by_id: dict[str, float]) -> dict:
    """PCC / SCC between utterance PER and a sentence accuracy (seed 002 fig. 5)."""
    ids = [i for i in per_by_id if i in accuracy_by_id]
    m = score_metrics([per_by_id[i] for i in ids], [accuracy_by_id[i] for i in ids])
    out = {"pcc": m["pcc"], "scc": m["scc"], "n": m["n"]}
    if "reason" in m:  # score_metrics names its inputs predicted / human: here they are PER / accuracy
        out["reason"] = m["reason"].replace("human scores", "accuracies").replace("predicted scores", "PERs")
    return out
