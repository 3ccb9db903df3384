"""Ahn & Nam 2025's MDD evaluation over a corpus: WER of the word transcript against the reference
text, PER of the phone transcript against the phones the annotators heard, mispronunciation
detection precision / recall / F1, and the PER-vs-accuracy correlation of its figure 5 (human
-0.45, model -0.35: a model whose scores mean something gives lower accuracy where it hears more
errors).

Phones are compared in the one convention of ``data.phones`` (no stress digits, ``*`` mapped to
its base phone unless ``keep_star``, ``<unk>`` a token of its own), the convention the training
target is written in, so a prediction equal to the annotation scores WER 0, PER 0, P = R = 1.

Detection follows the usual MDD hierarchy: every canonical phone is *accepted* or *rejected* by
the annotation and by the prediction. TP = true rejection (both say mispronounced), FP = false
rejection, FN = false acceptance; a true rejection is correctly *diagnosed* when the prediction
names what the annotators heard. Which predicted phone stands for which canonical phone is read
off a minimum-edit alignment of the prediction to the *heard* sequence, which is itself tied to
the canonical phones by the annotation's indices (``diagnose``). Aligning the prediction to the
canonical phones directly misfires on ties: for a canonical ``S IY`` whose S was left out and
whose IY was heard as S, the heard ``S`` aligns to the canonical S as cheaply as to the IY, and a
prediction equal to the annotation scored a false acceptance and a wrong diagnosis. Predicted phones inserted where nothing was said
and deleted where something was said are in PER; they enter detection only through the canonical
phone they stand for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from lmm_apa.data.phones import heard_phones as word_heard_phones
from lmm_apa.data.phones import UNK, normalise_phone, normalise_transcript
from lmm_apa.data.schema import Utterance
from lmm_apa.evaluate.metrics import detection_scores, error_rate, score_metrics, wer_words
from lmm_apa.prompts.align import edit_alignment

COUNT_KEYS = ("ta", "fr", "fa", "tr", "correct_diagnosis")


def heard_phones(utt: Utterance, keep_star: bool = False) -> tuple[list[str], list[str | None]]:
    """Canonical phones and, per canonical phone, what the annotators heard (None: deleted), both
    in the MDD phone convention."""
    canonical: list[str] = []
    heard: list[str | None] = []
    for w in utt.words:
        canonical.extend(normalise_phone(p) or UNK for p in w.phones)
        heard.extend(word_heard_phones(w.phones, w.mispronunciations, keep_star))
    return canonical, heard


def _gap_of_each_phone(heard: Sequence[str | None]) -> list[int]:
    """For each canonical phone, how many heard phones come before it (a deleted phone sits in the
    gap before the next heard one)."""
    gaps, k = [], 0
    for h in heard:
        gaps.append(k)
        k += h is not None
    return gaps


def diagnose(canonical: Sequence[str], heard: Sequence[str | None], predicted: Sequence[str]) -> list[str | None]:
    """Per canonical phone, the predicted phone standing for it (None: the prediction left it out).

    Heard phones take the predicted phone aligned to them (match or substitution) in a minimum-edit
    alignment of ``predicted`` to the heard sequence. A phone the annotators heard as deleted takes
    a predicted phone inserted in the same gap (aligned again, canonical vs inserted, when a gap
    holds several), so a prediction that says the deleted phone is a false acceptance. A
    prediction equal to the heard sequence therefore gives back ``heard`` exactly."""
    if len(canonical) != len(heard):
        raise ValueError(f"{len(heard)} heard labels for {len(canonical)} canonical phones")
    said_at = [i for i, h in enumerate(heard) if h is not None]
    out: list[str | None] = [None] * len(canonical)
    inserted: dict[int, list[int]] = {}  # gap -> predicted indices inserted there
    gap = 0
    for r, p in edit_alignment([heard[i] for i in said_at], list(predicted)):
        if r is None:
            inserted.setdefault(gap, []).append(p)
            continue
        gap = r + 1
        if p is not None:
            out[said_at[r]] = predicted[p]
    deleted: dict[int, list[int]] = {}
    for i, g in enumerate(_gap_of_each_phone(heard)):
        if heard[i] is None:
            deleted.setdefault(g, []).append(i)
    for g, idxs in deleted.items():
        ins = inserted.get(g, [])
        for r, p in edit_alignment([canonical[i] for i in idxs], [predicted[j] for j in ins]):
            if r is not None and p is not None:
                out[idxs[r]] = predicted[ins[p]]
    return out


def mdd_counts(canonical: Sequence[str], heard: Sequence[str | None], predicted: Sequence[str]) -> dict:
    """Detection counts of one utterance, all three sequences already in the phone convention:
    ``{"ta", "fr", "fa", "tr", "correct_diagnosis"}``."""
    c = dict.fromkeys(COUNT_KEYS, 0)
    for can, hum, pred in zip(canonical, heard, diagnose(canonical, heard, predicted)):
        human_ok, pred_ok = hum == can, pred == can
        if human_ok and pred_ok:
            c["ta"] += 1
        elif human_ok:
            c["fr"] += 1
        elif pred_ok:
            c["fa"] += 1
        else:
            c["tr"] += 1
            c["correct_diagnosis"] += int(pred == hum)
    return c


@dataclass
class MddAccumulator:
    """Collects one utterance at a time; ``result()`` gives the corpus figures. ``keep_star``: score
    Speechocean762's ``*`` phones as phones of their own (default: as their base phone)."""

    keep_star: bool = False
    word_refs: list = field(default_factory=list)
    word_hyps: list = field(default_factory=list)
    phone_refs: list = field(default_factory=list)
    phone_hyps: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    per_utterance: dict = field(default_factory=dict)  # id -> PER of that utterance

    def add(self, utt: Utterance, word_transcript: str | None, phone_transcript: str | None) -> None:
        """One utterance's transcripts (None: not given or not parsed; that part is not scored)."""
        if word_transcript is not None:
            self.word_refs.append(wer_words(utt.text))
            self.word_hyps.append(wer_words(word_transcript))
        if phone_transcript is not None and utt.words and all(w.phones for w in utt.words):
            canonical, heard = heard_phones(utt, self.keep_star)
            ref = [h for h in heard if h is not None]
            hyp = normalise_transcript(phone_transcript, self.keep_star)
            self.phone_refs.append(ref)
            self.phone_hyps.append(hyp)
            one = error_rate([ref], [hyp])["rate"]
            if one is not None:
                self.per_utterance[utt.id] = one
            for k, v in mdd_counts(canonical, heard, hyp).items():
                self.counts[k] += v

    def result(self) -> dict:
        w = error_rate(self.word_refs, self.word_hyps)
        p = error_rate(self.phone_refs, self.phone_hyps)
        out = {"wer": w["rate"], "per": p["rate"], **detection_scores(self.counts),
               "n": max(len(self.word_refs), len(self.phone_refs)),
               "n_words": w["n"], "n_phones": p["n"], "counts": dict(self.counts),
               "phone_convention": "CMUdict without stress; * " + ("kept" if self.keep_star else "as its base phone")}
        tr = self.counts["tr"]
        out["diagnosis_accuracy"] = self.counts["correct_diagnosis"] / tr if tr else None
        return out


def per_vs_accuracy(per_by_id: dict[str, float], accuracy_by_id: dict[str, float]) -> dict:
    """PCC / SCC between utterance PER and a sentence accuracy (Ahn & Nam 2025 fig. 5)."""
    ids = [i for i in per_by_id if i in accuracy_by_id]
    m = score_metrics([per_by_id[i] for i in ids], [accuracy_by_id[i] for i in ids])
    out = {"pcc": m["pcc"], "scc": m["scc"], "n": m["n"]}
    if "reason" in m:  # score_metrics names its inputs predicted / human: here they are PER / accuracy
        out["reason"] = m["reason"].replace("human scores", "accuracies").replace("predicted scores", "PERs")
    return out
