"""``report.md``: the run's figures in the papers' table layouts, beside the published rows.

Why the papers' layout: a reader compares "this run" with Wang et al. 2025 (Table 1) and Ahn & Nam
2025 (Table 3) at a glance, column for column. Undefined figures print as "-" (a correlation is
undefined when one side is constant, as SO762-test's completeness is), with the reason in the
per-aspect table below. The report ends with the evaluation's plots and, when the predictions come
from a training run, that run's loss curve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from lmm_apa.evaluate.references import MDD_COLUMNS, MDD_ROWS, PER_VS_ACCURACY, SCORE_COLUMNS, SCORE_ROWS

_HEADERS = {"phone.accuracy": "phone PCC/SCC", "word.accuracy": "word acc", "word.stress": "word str",
            "word.total": "word tot", "sentence.accuracy": "sent acc", "sentence.fluency": "sent flu",
            "sentence.prosodic": "sent pro", "sentence.completeness": "sent com", "sentence.total": "sent tot"}
LEVELS = ("sentence", "word", "phone")
LISTED = 20  # items of a problem list shown in the report; all of them are in metrics.json


def _num(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pair(pcc, scc, digits: int = 2) -> str:
    if pcc is None and scc is None:
        return "-"
    return _num(pcc, digits) if scc is None else f"{_num(pcc, digits)} / {_num(scc, digits)}"


def _run_cells(block: dict) -> list[str]:
    """This run's cells in the score table: phone RMSE, then PCC / SCC per column."""
    phone = block.get("phone", {}).get("accuracy")
    cells = [_num(phone["rmse"]) if phone else "-"]
    for col in SCORE_COLUMNS:
        level, aspect = col.split(".")
        m = block.get(level, {}).get(aspect)
        cells.append(_pair(m["pcc"], m["scc"]) if m else "")
    return cells


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _summary(metrics: dict) -> list[str]:
    """What was scored, and how much was not: every kind of dropped line is counted here; a task
    with too many unparsed answers gets a warning line (``run.parse_failure_warnings``)."""
    warnings = [f"**Warning:** {w}  " for w in metrics.get("warnings", [])]
    return ["# LMM-APA evaluation", ""] + warnings + ([""] if warnings else []) + [
        f"Predictions: `{metrics.get('predictions', '?')}`  ",
        f"Reference: `{metrics.get('reference', '?')}`  ",
        f"Scored predictions: {metrics['n']}; parse failures: {metrics['parse_failures']}; "
        f"ids not in the reference: {metrics.get('n_unknown_ids', 0)}; references never predicted: "
        f"{metrics.get('n_unpredicted', 0)}; bad lines: {len(metrics.get('bad_lines', []))}; "
        f"duplicated lines: {len(metrics.get('duplicates', []))}.",
        "",
    ]


def _score_table(metrics: dict) -> list[str]:
    """The published rows, then this run's (argmax and, when present, expected-score) rows."""
    header = ["system", "phone RMSE"] + [_HEADERS[c] for c in SCORE_COLUMNS]
    rows = []
    for r in SCORE_ROWS:
        rows.append([r["system"], _num(r["phone_rmse"])]
                    + [_pair(*r["values"][c]) if c in r["values"] else "" for c in SCORE_COLUMNS])
    rows.append(["**this run**"] + _run_cells(metrics))
    if "expected" in metrics:
        rows.append(["**this run (expected score)**"] + _run_cells(metrics["expected"]))
    return ["## Scores on the SO762 layout (Wang et al. 2025, Table 1; PCC / SCC, phone RMSE on the 0-2 scale)", "",
            *_table(header, rows), "",
            "Reference rows are the papers' published SO762-test figures (Wang et al. 2025: Qwen2-Audio-7B; "
            "Ahn & Nam 2025: Phi-4-multimodal, PCC only); empty cells were not reported.", ""]


def _per_aspect_table(metrics: dict) -> list[str]:
    """Every aspect with its n and, for an undefined figure, why it is undefined."""
    sources = [("predicted", metrics)] + ([("expected", metrics["expected"])] if "expected" in metrics else [])
    rows = [[source, f"{level}.{aspect}", str(m["n"]), _num(m["pcc"], 3), _num(m["scc"], 3), _num(m["rmse"], 3),
             m.get("reason", "")]
            for source, block in sources for level in LEVELS for aspect, m in block.get(level, {}).items()]
    return ["## Per aspect (this run)", "",
            *_table(["source", "aspect", "n", "PCC", "SCC", "RMSE", "undefined because"], rows), ""]


def _mdd_section(m: dict) -> list[str]:
    """Ahn & Nam 2025's MDD table with this run's row, the detection counts, and PER against
    sentence accuracy (their figure 5)."""
    rows = [[r["system"]] + [_num(r["values"].get(c), 3) if c in r["values"] else "" for c in MDD_COLUMNS]
            for r in MDD_ROWS]
    rows.append(["**this run**"] + [_num(m.get(c), 3) for c in MDD_COLUMNS])
    c = m.get("counts", {})
    lines = ["## Mispronunciation detection and diagnosis (Ahn & Nam 2025, Table 3)", "",
             *_table(["system", "WER", "PER", "precision", "recall", "F1"], rows), "",
             f"Utterances: {m.get('n', 0)} ({m.get('n_words', 0)} reference words, {m.get('n_phones', 0)} "
             f"heard phones). Detection counts: true acceptance {c.get('ta', 0)}, false rejection "
             f"{c.get('fr', 0)}, false acceptance {c.get('fa', 0)}, true rejection {c.get('tr', 0)} "
             f"(correct diagnosis {c.get('correct_diagnosis', 0)}).", ""]
    corr = m.get("per_vs_accuracy", {})
    if corr:
        rows = [[who, _num(corr[who].get("pcc"), 3), _num(corr[who].get("scc"), 3), str(corr[who].get("n", 0)),
                 _num(PER_VS_ACCURACY[who], 3)] for who in ("human", "predicted") if who in corr]
        lines += ["PER vs sentence accuracy (Ahn & Nam 2025, figure 5):", "",
                  *_table(["accuracy from", "PCC", "SCC", "n", "Ahn & Nam 2025 PCC"], rows), ""]
    return lines


def _tasks_table(tasks: dict) -> list[str]:
    return ["## Per task", "", *_table(["task", "n", "parse failures"],
                                       [[t, str(v["n"]), str(v["parse_failures"])] for t, v in tasks.items()]), ""]


_PROBLEMS: list[tuple[str, str, Callable]] = [
    ("Parse failures", "failures", lambda f: f"`{f['id']}` ({f['task']}): {f['reason']}"),
    ("Ids not in the reference", "unknown_ids", lambda f: f"`{f}`"),
    ("References never predicted", "unpredicted", lambda f: f"`{f}`"),
    ("Bad prediction lines", "bad_lines", lambda f: f"line {f.get('line')}: {f.get('reason')}"),
    ("Duplicated lines (the last one was scored)", "duplicates", lambda f: f"`{f['id']}` ({f['task']}), line {f.get('line')}"),
]


def _problem_lists(metrics: dict) -> list[str]:
    """The first ``LISTED`` items of every non-empty problem list, so a reader sees which lines
    were not scored and why without opening metrics.json."""
    lines: list[str] = []
    for title, key, fmt in _PROBLEMS:
        items = metrics.get(key) or []
        if items:
            lines += [f"## {title} ({len(items)})", "", *[f"- {fmt(i)}" for i in items[:LISTED]]]
            if len(items) > LISTED:
                lines.append(f"- ... {len(items) - LISTED} more in metrics.json")
            lines.append("")
    return lines


def _link(path: str | Path, base: Path | None) -> str:
    """``path`` as the report links it: relative to the report's folder when one is given."""
    if base is None:
        return Path(path).name
    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def _figures(plots: list[str] | None, loss_plot: str | Path | None, base: Path | None) -> list[str]:
    lines: list[str] = []
    if plots:
        lines += ["## Plots", ""]
        for p in plots:  # one figure per paragraph: each is a grid over every aspect
            lines += [f"![{Path(p).stem}]({_link(p, base)})", ""]
    if loss_plot is not None and Path(loss_plot).is_file():
        lines += ["## Training", "", "Training loss per optimizer step (`loss_log.jsonl` beside it has the figures):", "",
                  f"![training loss]({_link(loss_plot, base)})", ""]
    return lines


def render_report(metrics: dict, plots: list[str] | None = None, loss_plot: str | Path | None = None,
                  base: Path | None = None) -> str:
    """The report's Markdown: summary, score tables, MDD, per task, problems, then the figures
    (``plots`` and the training ``loss_plot``, linked relative to ``base``, the report's folder)."""
    lines = _summary(metrics)
    if any(level in metrics for level in LEVELS):
        lines += _score_table(metrics) + _per_aspect_table(metrics)
    if "mdd" in metrics:
        lines += _mdd_section(metrics["mdd"])
    if len(metrics.get("tasks", {})) > 1:
        lines += _tasks_table(metrics["tasks"])
    lines += _problem_lists(metrics)
    lines += _figures(plots, loss_plot, base)
    return "\n".join(lines)


def write_report(metrics: dict, path: str | Path, plots: list[str] | None = None,
                 loss_plot: str | Path | None = None) -> Path:
    """Write ``report.md`` at ``path``; ``loss_plot`` (a training run's ``loss.png``) is linked when
    it exists."""
    path = Path(path)
    path.write_text(render_report(metrics, plots, loss_plot, base=path.parent), encoding="utf-8")
    return path
