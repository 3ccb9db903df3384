"""The papers' metrics, as pure functions of numbers and strings.

- score agreement (both papers): PCC (``scipy.stats.pearsonr``), SCC (``scipy.stats.spearmanr``),
  RMSE, and the PCC's p-value (``p``). A correlation of a constant series is undefined: it is ``None`` with a ``reason``, never a
  crash and never a misleading 0 (SO762 completeness is almost always 10);
- WER and PER (Ahn & Nam 2025 eq. 1-2): Levenshtein (S + D + I) / N summed over the corpus, via jiwer
  (``error_rate`` over token lists; ``evaluate.mdd`` feeds it phones in ``data.phones``' convention);
- mispronunciation detection precision / recall / F1 (Ahn & Nam 2025 eq. 3-5) from the detection counts
  (TP = true rejection, FP = false rejection, FN = false acceptance); the counting itself, with
  the MDD phone convention and alignment, is in ``evaluate.mdd``.
"""

from __future__ import annotations

import re
from typing import Sequence

import jiwer
import numpy as np
from scipy import stats


def _clean(pred: Sequence[float], human: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(pred, dtype=float)
    y = np.asarray(human, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"predicted ({x.size}) and human ({y.size}) scores differ in length")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _undefined_reason(x: np.ndarray, y: np.ndarray) -> str | None:
    if x.size < 2:
        return f"fewer than 2 pairs (n={x.size})"
    if np.ptp(y) == 0:
        return f"human scores are constant ({y[0]:g})"
    if np.ptp(x) == 0:
        return f"predicted scores are constant ({x[0]:g})"
    return None


def pcc(pred: Sequence[float], human: Sequence[float]) -> float | None:
    """Pearson correlation; None when undefined (n < 2 or a constant series)."""
    x, y = _clean(pred, human)
    return None if _undefined_reason(x, y) else float(stats.pearsonr(x, y)[0])


def scc(pred: Sequence[float], human: Sequence[float]) -> float | None:
    """Spearman rank correlation; None when undefined."""
    x, y = _clean(pred, human)
    return None if _undefined_reason(x, y) else float(stats.spearmanr(x, y)[0])


def rmse(pred: Sequence[float], human: Sequence[float]) -> float | None:
    x, y = _clean(pred, human)
    return None if x.size == 0 else float(np.sqrt(np.mean((x - y) ** 2)))


def pcc_p_value(pred: Sequence[float], human: Sequence[float]) -> float | None:
    """Two-sided p-value of the Pearson correlation (``scipy.stats.pearsonr``: the null hypothesis
    of no linear correlation); None when the correlation is undefined. Ahn & Nam 2025 Table 3 marks
    the PCCs whose p is not under 0.05."""
    x, y = _clean(pred, human)
    return None if _undefined_reason(x, y) else float(stats.pearsonr(x, y)[1])


SIGNIFICANCE_LEVEL = 0.05


def score_metrics(pred: Sequence[float], human: Sequence[float]) -> dict:
    """``{"pcc", "p", "scc", "rmse", "n"}`` (``p``: the PCC's p-value; + ``"reason"`` when a
    correlation is undefined)."""
    x, y = _clean(pred, human)
    out = {"pcc": pcc(x, y), "p": pcc_p_value(x, y), "scc": scc(x, y), "rmse": rmse(x, y), "n": int(x.size)}
    reason = _undefined_reason(x, y)
    if reason:
        out["reason"] = reason
    return out


# --------------------------------------------------------------------------- WER / PER
def wer_words(text: str) -> list[str]:
    """The words WER compares: upper case, punctuation removed, apostrophes inside words and
    ``<unk>`` kept ("That's it." -> ["THAT'S", "IT"]). Not the lexicon's spelling
    (``data.lexicon.lexicon_words`` splits "well-known" in two; a transcript's hyphen is a space)."""
    text = re.sub(r"[^\w'<>\s]", " ", text.upper())
    return [w.strip("'") for w in text.split() if w.strip("'")]


def error_rate(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]) -> dict:
    """Corpus Levenshtein error rate over token lists: ``{"rate", "substitutions", "deletions",
    "insertions", "n"}``; rate None when the references hold no tokens."""
    pairs = [(list(r), list(h)) for r, h in zip(refs, hyps) if len(r)]
    empty_refs = sum(1 for r in refs if not len(r))
    n = sum(len(r) for r, _ in pairs)
    counts = {"substitutions": 0, "deletions": 0, "insertions": 0}
    if pairs:
        o = jiwer.process_words([" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs])
        counts = {"substitutions": o.substitutions, "deletions": o.deletions, "insertions": o.insertions}
    # an empty reference: every hypothesis token is an insertion (jiwer refuses empty references)
    counts["insertions"] += sum(len(h) for r, h in zip(refs, hyps) if not len(r))
    rate = (counts["substitutions"] + counts["deletions"] + counts["insertions"]) / n if n else None
    out = {"rate": rate, **counts, "n": n}
    if empty_refs:
        out["empty_references"] = empty_refs
    return out


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float | None:
    """Corpus WER of transcripts (words from ``wer_words``)."""
    return error_rate([wer_words(r) for r in refs], [wer_words(h) for h in hyps])["rate"]


# --------------------------------------------------------------------------- MDD
def detection_scores(counts: dict) -> dict:
    """precision = TR / (TR + FR), recall = TR / (TR + FA), F1; None when a denominator is 0."""
    tp, fp, fn = counts["tr"], counts["fr"], counts["fa"]
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None or precision + recall == 0:
        f1 = None if precision is None or recall is None else 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}

