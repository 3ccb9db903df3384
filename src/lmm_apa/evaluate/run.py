"""``lmm-apa evaluate``: score a predictions JSONL against a labelled corpus (SPEC §4, §7).

Why it parses ``output`` itself: predictions written by any system in the papers' answer formats
can be scored, and the parse failures are counted here, per slot, by one parser. Nothing is dropped
silently: lines that are not JSON, ids missing from the reference, references never predicted,
duplicated lines and unparsable answers are all counted and listed in ``metrics.json``.

Scales: sentence and word scores 0-10; phone scores are compared on SO762's 0-2 scale (model-scale
values / 5), the GOPT / HMamba convention for phone RMSE. Correlations are scale-free.

A file may hold several tasks (e.g. seed 002's ``apa`` and ``mdd`` lines for the same ids). Each
task's figures are under ``metrics["tasks"][name]``; the top level takes every aspect from the
first task (in file order) that produces it, plus ``mdd`` from the ``mdd`` lines.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping

from lmm_apa.data.schema import SENTENCE_ASPECTS, WORD_ASPECTS, Utterance, phone_from_model
from lmm_apa.evaluate.mdd import MddAccumulator, per_vs_accuracy
from lmm_apa.evaluate.metrics import score_metrics
from lmm_apa.prompts.tasks import TASK_NAMES, get_task
from lmm_apa.prompts.template import key_from_str, key_to_str

LEVEL_ASPECTS = {"sentence": SENTENCE_ASPECTS, "word": WORD_ASPECTS, "phone": ("accuracy",)}


def read_predictions(path: str | Path) -> tuple[list[dict], list[dict]]:
    """``(records, bad_lines)``; each record gets ``_line`` (1-based). A line that is not a JSON
    object with ``id`` and ``task`` is a bad line (listed with why), the rest still load."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such predictions file")
    records, bad = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad.append({"line": n, "reason": f"not JSON: {e.msg}"})
                continue
            if not isinstance(rec, dict):
                bad.append({"line": n, "reason": "not a JSON object"})
                continue
            missing = [k for k in ("id", "task") if k not in rec]
            if missing:
                bad.append({"line": n, "id": rec.get("id"), "reason": f"missing field(s) {', '.join(missing)}"})
                continue
            rec["_line"] = n
            records.append(rec)
    return records, bad


def _to_common_scale(key: tuple, value: float) -> float:
    return phone_from_model(value) if key[0] == "phone" else float(value)


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _level_block(pairs: Mapping[tuple[str, str], list], aspects: Iterable[tuple[str, str]]) -> dict:
    """``{"sentence": {"accuracy": {...}}, ...}`` for the given (level, aspect) pairs."""
    out: dict = {}
    for level, aspect in aspects:
        rows = pairs.get((level, aspect), [])
        out.setdefault(level, {})[aspect] = score_metrics([r["pred"] for r in rows], [r["human"] for r in rows])
    return out


def evaluate_records(records: list[dict], references: Mapping[str, Utterance], bad_lines: list[dict] | None = None) -> tuple[dict, dict]:
    """The core, free of files: ``(metrics, details)``. ``details`` holds the score pairs per
    (source, level, aspect) for plots: ``details["pairs"]["main"][(level, aspect)]`` is a list of
    ``{"id", "key", "pred", "human"}``; ``details["pairs"]["expected"]`` the same from ``expected``."""
    bad_lines = list(bad_lines or [])
    latest: dict[tuple[str, str], dict] = {}
    duplicates = []
    unknown_ids: list[str] = []
    for rec in records:
        task_name, uid = str(rec["task"]), str(rec["id"])
        if task_name not in TASK_NAMES:
            bad_lines.append({"line": rec.get("_line"), "id": uid, "reason": f"unknown task {task_name!r}"})
            continue
        if uid not in references:
            unknown_ids.append(uid)
            continue
        if (uid, task_name) in latest:
            duplicates.append({"id": uid, "task": task_name, "line": rec.get("_line")})
        latest[(uid, task_name)] = rec  # a resumed run appends: the last line wins

    task_order = list(dict.fromkeys(t for _, t in latest))
    per_task_pairs: dict[str, dict] = {t: defaultdict(list) for t in task_order}
    per_task_expected: dict[str, dict] = {t: defaultdict(list) for t in task_order}
    per_task_failures: dict[str, list] = {t: [] for t in task_order}
    per_task_n = defaultdict(int)
    has_expected = defaultdict(bool)
    mdd = MddAccumulator()
    predicted_accuracy: dict[str, float] = {}
    accuracy_source = next((t for t in task_order if ("sentence", "accuracy") in get_task(t).aspects), None)

    for (uid, task_name), rec in latest.items():
        task, utt = get_task(task_name), references[uid]
        per_task_n[task_name] += 1
        output = rec.get("output")
        parsed = task.parse(output if isinstance(output, str) else "", utt)
        reasons = []
        if rec.get("error"):
            reasons.append(f"error: {rec['error']}")
        if not isinstance(output, str):
            reasons.append("no output text")
        if parsed.missing:
            reasons.append(f"{len(parsed.missing)} missing ({', '.join(key_to_str(k) for k in parsed.missing[:5])}"
                           + (", ..." if len(parsed.missing) > 5 else "") + ")")
        if parsed.malformed:
            reasons.append(f"{len(parsed.malformed)} malformed")
        if parsed.out_of_range:
            reasons.append(f"{len(parsed.out_of_range)} out of range")
        if reasons:
            per_task_failures[task_name].append({"id": uid, "task": task_name, "reason": "; ".join(reasons)})

        if task_name == "mdd":
            mdd.add(utt, parsed.word_transcript, parsed.phone_transcript)
            continue
        human = task.reference_values(utt)
        for key, value in parsed.values.items():
            if key in human:
                per_task_pairs[task_name][key[:2]].append(
                    {"id": uid, "key": key_to_str(key), "pred": _to_common_scale(key, value),
                     "human": _to_common_scale(key, human[key])})
        if task_name == accuracy_source and ("sentence", "accuracy", None) in parsed.values:
            predicted_accuracy[uid] = parsed.values[("sentence", "accuracy", None)]
        expected = rec.get("expected")
        if isinstance(expected, dict):
            has_expected[task_name] = True
            for name, value in expected.items():
                try:
                    key = key_from_str(str(name))
                except (ValueError, IndexError):
                    continue
                if key in human and _finite(value):
                    per_task_expected[task_name][key[:2]].append(
                        {"id": uid, "key": name, "pred": _to_common_scale(key, float(value)),
                         "human": _to_common_scale(key, human[key])})

    # top level: each aspect from the first task producing it
    owner: dict[tuple[str, str], str] = {}
    for t in task_order:
        for a in get_task(t).aspects:
            owner.setdefault(a, t)
    main_pairs = {a: per_task_pairs[t][a] for a, t in owner.items()}
    expected_pairs = {a: per_task_expected[t][a] for a, t in owner.items() if has_expected[t]}

    failures = [f for t in task_order for f in per_task_failures[t]]
    predicted_ids = {uid for uid, _ in latest}
    unpredicted = sorted(set(references) - predicted_ids)
    metrics: dict = {"n": len(latest), "parse_failures": len(failures)}
    metrics.update(_level_block(main_pairs, sorted(owner, key=_aspect_order)))
    if "mdd" in task_order:
        metrics["mdd"] = mdd.result()
        human_acc = {u.id: u.sentence.accuracy for u in references.values()
                     if u.sentence is not None and u.sentence.accuracy is not None}
        corr = {"human": per_vs_accuracy(mdd.per_utterance, human_acc)}
        if predicted_accuracy:
            corr["predicted"] = per_vs_accuracy(mdd.per_utterance, predicted_accuracy)
            corr["predicted_source"] = accuracy_source
        for v in corr.values():
            if isinstance(v, dict):
                v.pop("rmse", None)
        metrics["mdd"]["per_vs_accuracy"] = corr
    if expected_pairs:
        metrics["expected"] = {"n": sum(1 for (u, t), r in latest.items() if isinstance(r.get("expected"), dict)),
                               **_level_block(expected_pairs, sorted(expected_pairs, key=_aspect_order))}
    metrics["tasks"] = {
        t: {"n": per_task_n[t], "parse_failures": len(per_task_failures[t]),
            **(_level_block(per_task_pairs[t], get_task(t).aspects) if t != "mdd" else {})}
        for t in task_order
    }
    metrics["unknown_ids"] = sorted(set(unknown_ids))
    metrics["n_unknown_ids"] = len(unknown_ids)
    metrics["unpredicted"] = unpredicted
    metrics["n_unpredicted"] = len(unpredicted)
    metrics["duplicates"] = duplicates
    metrics["bad_lines"] = bad_lines
    metrics["failures"] = failures
    details = {"pairs": {"main": main_pairs, "expected": expected_pairs}, "owner": owner}
    return metrics, details


def _aspect_order(a: tuple[str, str]) -> tuple[int, int]:
    levels = ("sentence", "word", "phone")
    return levels.index(a[0]), LEVEL_ASPECTS[a[0]].index(a[1])


def _load_reference(reference, split: str | None) -> tuple[dict[str, Utterance], str]:
    if isinstance(reference, Mapping):
        return dict(reference), "<in-memory>"
    if hasattr(reference, "by_id"):
        return reference.by_id(), getattr(reference, "name", "<corpus>")
    from lmm_apa.data.corpus import load_corpus

    corpus = load_corpus(reference, split=split)
    return corpus.by_id(), str(reference)


def evaluate_predictions(preds_path, reference, out=None, split=None) -> dict:
    """Score ``preds_path`` against ``reference`` (a corpus path any reader takes, a ``Corpus``, or
    ``{id: Utterance}``). Writes ``metrics.json``, ``report.md`` and plots to ``out`` when given;
    returns the metrics (SPEC §7 shape, extended with ``tasks``, ``expected`` and the lists of
    unknown / unpredicted / failed ids)."""
    records, bad = read_predictions(preds_path)
    refs, ref_name = _load_reference(reference, split)
    if not refs:
        raise ValueError(f"{ref_name}: the reference holds no utterances" + (f" in split {split!r}" if split else ""))
    metrics, details = evaluate_records(records, refs, bad)
    metrics["predictions"] = str(preds_path)
    metrics["reference"] = ref_name + (f" (split {split})" if split else "")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        from lmm_apa.evaluate.plots import write_plots
        from lmm_apa.evaluate.report import write_report

        plots = write_plots(details, out)
        write_report(metrics, out / "report.md", plots=plots)
    return metrics
