"""``lmm-apa evaluate``: score a predictions JSONL against a labelled corpus.

Why it parses ``output`` itself: predictions written by any system in the papers' answer formats
can be scored, and the parse failures are counted here, per slot, by one parser. Nothing is dropped
silently: lines that are not JSON, ids missing from the reference, references never predicted,
duplicated lines and unparsable answers are all counted and listed in ``metrics.json``.

Scales: sentence and word scores 0-10; phone scores are compared on SO762's 0-2 scale (model-scale
values / 5), the GOPT / HMamba convention for phone RMSE. Correlations are scale-free.

A file may hold several tasks (e.g. Ahn & Nam 2025's ``apa`` and ``mdd`` lines for the same ids). Each
task's figures are under ``metrics["tasks"][name]``; the top level takes every aspect from the
first task (in file order) that produces it, plus ``mdd`` from the lines of a task with an ``mdd``
metric section (``Task.metric_sections``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from lmm_apa.data.schema import SENTENCE_ASPECTS, WORD_ASPECTS, Utterance, phone_from_model
from lmm_apa.evaluate.mdd import MddAccumulator, per_vs_accuracy
from lmm_apa.evaluate.metrics import score_metrics
from lmm_apa.prompts.tasks import TASK_NAMES, Task, get_task
from lmm_apa.prompts.template import SlotKey, key_from_str, key_to_str

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


@dataclass
class _TaskTally:
    """What one task's lines add up to: score pairs (argmax and expected), failures, line count."""

    task: Task
    n: int = 0
    pairs: dict = field(default_factory=lambda: defaultdict(list))
    expected: dict = field(default_factory=lambda: defaultdict(list))
    has_expected: bool = False
    failures: list = field(default_factory=list)


def _latest_lines(records: list[dict], references: Mapping[str, Utterance], bad_lines: list[dict]):
    """``(latest, duplicates, unknown_ids)``: the last line per (id, task) (a resumed run appends:
    the last line wins); lines of an unknown task go to ``bad_lines``."""
    latest: dict[tuple[str, str], dict] = {}
    duplicates, unknown_ids = [], []
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
        latest[(uid, task_name)] = rec
    return latest, duplicates, unknown_ids


def _failure_reasons(rec: dict, parsed) -> list[str]:
    """Why a line counts as a parse failure ([] when it does not)."""
    reasons = []
    if rec.get("error"):
        reasons.append(f"error: {rec['error']}")
    if not isinstance(rec.get("output"), str):
        reasons.append("no output text")
    if parsed.missing:
        reasons.append(f"{len(parsed.missing)} missing ({', '.join(key_to_str(k) for k in parsed.missing[:5])}"
                       + (", ..." if len(parsed.missing) > 5 else "") + ")")
    if parsed.malformed:
        reasons.append(f"{len(parsed.malformed)} malformed")
    if parsed.out_of_range:
        reasons.append(f"{len(parsed.out_of_range)} out of range")
    return reasons


def _pair(uid: str, key, name: str, pred: float, human: float) -> dict:
    return {"id": uid, "key": name, "pred": _to_common_scale(key, pred), "human": _to_common_scale(key, human)}


def _add_score_pairs(tally: _TaskTally, uid: str, utt: Utterance, parsed, rec: dict) -> None:
    """Pair every parsed (and every ``expected``) score with its human label."""
    human = tally.task.reference_values(utt)
    for key, value in parsed.values.items():
        if key in human:
            tally.pairs[key.aspect_pair].append(_pair(uid, key, key_to_str(key), value, human[key]))
    expected = rec.get("expected")
    if not isinstance(expected, dict):
        return
    tally.has_expected = True
    for name, value in expected.items():
        try:
            key = key_from_str(str(name))
        except (ValueError, IndexError):
            continue
        if key in human and _finite(value):
            tally.expected[key.aspect_pair].append(_pair(uid, key, name, float(value), human[key]))


def _tally_lines(latest: dict, references: Mapping[str, Utterance], tasks: Mapping[str, Task] | None = None):
    """Parse every kept line once: ``(tallies, mdd, predicted_accuracy, accuracy_source)``. A task
    named in ``tasks`` is used as given (e.g. mdd with ``keep_star``), the others by name; MDD is
    scored in the phone convention of the task whose lines it reads, as its targets were built."""
    tasks = tasks or {}
    tallies = {t: _TaskTally(tasks.get(t) or get_task(t)) for t in dict.fromkeys(t for _, t in latest)}
    mdd_tasks = [tally.task for tally in tallies.values() if "mdd" in tally.task.metric_sections]
    mdd = MddAccumulator(keep_star=any(getattr(t, "keep_star", False) for t in mdd_tasks))
    predicted_accuracy: dict[str, float] = {}
    accuracy_key = SlotKey.sentence("accuracy")
    accuracy_source = next((t for t, tally in tallies.items() if accuracy_key.aspect_pair in tally.task.aspects), None)
    for (uid, task_name), rec in latest.items():
        tally, utt = tallies[task_name], references[uid]
        tally.n += 1
        output = rec.get("output")
        parsed = tally.task.parse(output if isinstance(output, str) else "", utt)
        reasons = _failure_reasons(rec, parsed)
        if reasons:
            tally.failures.append({"id": uid, "task": task_name, "reason": "; ".join(reasons)})
        if "mdd" in tally.task.metric_sections:
            mdd.add(utt, parsed.word_transcript, parsed.phone_transcript)
        if not tally.task.aspects:
            continue
        _add_score_pairs(tally, uid, utt, parsed, rec)
        if task_name == accuracy_source and accuracy_key in parsed.values:
            predicted_accuracy[uid] = parsed.values[accuracy_key]
    return tallies, mdd, predicted_accuracy, accuracy_source


def _mdd_section(mdd: MddAccumulator, references: Mapping[str, Utterance], predicted_accuracy: dict,
                 accuracy_source: str | None) -> dict:
    """MDD figures plus how each utterance's PER follows sentence accuracy (human and predicted)."""
    section = mdd.result()
    human_acc = {u.id: u.sentence.accuracy for u in references.values()
                 if u.sentence is not None and u.sentence.accuracy is not None}
    corr = {"human": per_vs_accuracy(mdd.per_utterance, human_acc)}
    if predicted_accuracy:
        corr["predicted"] = per_vs_accuracy(mdd.per_utterance, predicted_accuracy)
        corr["predicted_source"] = accuracy_source
    for v in corr.values():
        if isinstance(v, dict):
            v.pop("rmse", None)
    section["per_vs_accuracy"] = corr
    return section


PARSE_FAILURE_WARNING_RATE = 0.05  # a task with more of its answers unparsed than this is flagged


def parse_failure_warnings(tasks: Mapping[str, dict]) -> list[str]:
    """One line per task whose answers failed to parse (or errored) in more than
    ``PARSE_FAILURE_WARNING_RATE`` of its lines: its figures cover the parsed answers only, so they
    may flatter the model (a run whose junk answers were dropped is not comparable to the papers)."""
    out = []
    for name, t in tasks.items():
        rate = t.get("parse_failure_rate")
        if rate is not None and rate > PARSE_FAILURE_WARNING_RATE:
            out.append(f"{name}: {t['parse_failures']} of {t['n']} answers ({rate:.0%}) could not be parsed, more than "
                       f"{PARSE_FAILURE_WARNING_RATE:.0%}; its figures cover the parsed answers only")
    return out


def evaluate_records(records: list[dict], references: Mapping[str, Utterance], bad_lines: list[dict] | None = None,
                     tasks: Mapping[str, Task] | None = None) -> tuple[dict, dict]:
    """The core, free of files: ``(metrics, details)``; ``tasks``: task objects by name to use instead
    of the registered ones (e.g. ``mdd`` with ``keep_star``). ``details`` holds the score pairs per
    (source, level, aspect) for plots: ``details["pairs"]["main"][(level, aspect)]`` is a list of
    ``{"id", "key", "pred", "human"}``; ``details["pairs"]["expected"]`` the same from ``expected``."""
    bad_lines = list(bad_lines or [])
    latest, duplicates, unknown_ids = _latest_lines(records, references, bad_lines)
    tallies, mdd, predicted_accuracy, accuracy_source = _tally_lines(latest, references, tasks)

    # top level: each aspect from the first task producing it
    owner: dict[tuple[str, str], str] = {}
    for t, tally in tallies.items():
        for a in tally.task.aspects:
            owner.setdefault(a, t)
    main_pairs = {a: tallies[t].pairs[a] for a, t in owner.items()}
    expected_pairs = {a: tallies[t].expected[a] for a, t in owner.items() if tallies[t].has_expected}

    failures = [f for tally in tallies.values() for f in tally.failures]
    unpredicted = sorted(set(references) - {uid for uid, _ in latest})
    metrics: dict = {"n": len(latest), "parse_failures": len(failures)}
    metrics.update(_level_block(main_pairs, sorted(owner, key=_aspect_order)))
    if any("mdd" in tally.task.metric_sections for tally in tallies.values()):
        metrics["mdd"] = _mdd_section(mdd, references, predicted_accuracy, accuracy_source)
    if expected_pairs:
        metrics["expected"] = {"n": sum(1 for r in latest.values() if isinstance(r.get("expected"), dict)),
                               **_level_block(expected_pairs, sorted(expected_pairs, key=_aspect_order))}
    metrics["tasks"] = {
        t: {"n": tally.n, "parse_failures": len(tally.failures),
            "parse_failure_rate": len(tally.failures) / tally.n if tally.n else None,
            **_level_block(tally.pairs, tally.task.aspects)}
        for t, tally in tallies.items()
    }
    metrics["parse_failure_rate"] = len(failures) / len(latest) if latest else None
    metrics["warnings"] = parse_failure_warnings(metrics["tasks"])
    metrics.update(unknown_ids=sorted(set(unknown_ids)), n_unknown_ids=len(unknown_ids), unpredicted=unpredicted,
                   n_unpredicted=len(unpredicted), duplicates=duplicates, bad_lines=bad_lines, failures=failures)
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


def evaluate_predictions(preds_path, reference, out=None, split=None, loss_plot=None, tasks=None) -> dict:
    """Score ``preds_path`` against ``reference`` (a corpus path any reader takes, a ``Corpus``, or
    ``{id: Utterance}``). Writes ``metrics.json``, ``report.md`` and plots to ``out`` when given
    (the report links ``loss_plot``, the training run's ``loss.png``, when given and present);
    returns the metrics (the papers' figures, extended with ``tasks``, ``expected`` and the lists of
    unknown / unpredicted / failed ids). ``tasks``: as in ``evaluate_records``."""
    records, bad = read_predictions(preds_path)
    refs, ref_name = _load_reference(reference, split)
    if not refs:
        raise ValueError(f"{ref_name}: the reference holds no utterances" + (f" in split {split!r}" if split else ""))
    metrics, details = evaluate_records(records, refs, bad, tasks)
    metrics["predictions"] = str(preds_path)
    metrics["reference"] = ref_name + (f" (split {split})" if split else "")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        from lmm_apa.evaluate.plots import write_plots
        from lmm_apa.evaluate.report import write_report

        plots = write_plots(details, out)
        write_report(metrics, out / "report.md", plots=plots, loss_plot=loss_plot)
    return metrics
