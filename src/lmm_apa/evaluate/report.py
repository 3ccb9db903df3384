"""``report.md``: the run's figures in the papers' table layouts, beside the published rows.

Why the papers' layout: a reader compares "this run" with seed 001 Table 1 / seed 002 Table 3 at a
glance, column for column. Undefined figures print as "-" (SPEC §1: completeness correlations are
undefined on SO762 test), with the reason in the per-aspect table below.
"""

from __future__ import annotations

from pathlib import Path

from lmm_apa.evaluate.references import MDD_COLUMNS, MDD_ROWS, PER_VS_ACCURACY, SCORE_COLUMNS, SCORE_ROWS

_HEADERS = {"phone.accuracy": "phone PCC/SCC", "word.accuracy": "word acc", "word.stress": "word str",
            "word.total": "word tot", "sentence.accuracy": "sent acc", "sentence.fluency": "sent flu",
            "sentence.prosodic": "sent pro", "sentence.completeness": "sent com", "sentence.total": "sent tot"}


def _num(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pair(pcc, scc, digits: int = 2) -> str:
    if pcc is None and scc is None:
        return "-"
    return _num(pcc, digits) if scc is None else f"{_num(pcc, digits)} / {_num(scc, digits)}"


def _run_row(block: dict, name: str) -> list[str]:
    phone = block.get("phone", {}).get("accuracy")
    cells = [name, _num(phone["rmse"]) if phone else "-"]
    for col in SCORE_COLUMNS:
        level, aspect = col.split(".")
        m = block.get(level, {}).get(aspect)
        cells.append(_pair(m["pcc"], m["scc"]) if m else "")
    return cells


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_report(metrics: dict, plots: list[str] | None = None) -> str:
    lines = ["# LMM-APA evaluation", ""]
    lines.append(f"Predictions: `{metrics.get('predictions', '?')}`  ")
    lines.append(f"Reference: `{metrics.get('reference', '?')}`  ")
    lines.append(f"Scored predictions: {metrics['n']}; parse failures: {metrics['parse_failures']}; "
                 f"ids not in the reference: {metrics.get('n_unknown_ids', 0)}; references never predicted: "
                 f"{metrics.get('n_unpredicted', 0)}; bad lines: {len(metrics.get('bad_lines', []))}; "
                 f"duplicated lines: {len(metrics.get('duplicates', []))}.")
    lines.append("")

    has_scores = any(level in metrics for level in ("sentence", "word", "phone"))
    if has_scores:
        lines += ["## Scores on the SO762 layout (seed 001 Table 1; PCC / SCC, phone RMSE on the 0-2 scale)", ""]
        header = ["system", "phone RMSE"] + [_HEADERS[c] for c in SCORE_COLUMNS]
        rows = []
        for r in SCORE_ROWS:
            cells = [r["system"], _num(r["phone_rmse"])]
            for col in SCORE_COLUMNS:
                v = r["values"].get(col)
                cells.append(_pair(*v) if v else "")
            rows.append(cells)
        rows.append(["**this run**"] + _run_row(metrics, "")[1:])
        if "expected" in metrics:
            rows.append(["**this run (expected score)**"] + _run_row(metrics["expected"], "")[1:])
        lines += _table(header, rows)
        lines += ["", "Reference rows are the papers' published SO762-test figures (seed 001: Qwen2-Audio-7B; "
                  "seed 002: Phi-4-multimodal, PCC only); empty cells were not reported.", ""]

        lines += ["## Per aspect (this run)", ""]
        rows = []
        for source, block in [("predicted", metrics)] + ([("expected", metrics["expected"])] if "expected" in metrics else []):
            for level in ("sentence", "word", "phone"):
                for aspect, m in block.get(level, {}).items():
                    rows.append([source, f"{level}.{aspect}", str(m["n"]), _num(m["pcc"], 3), _num(m["scc"], 3),
                                 _num(m["rmse"], 3), m.get("reason", "")])
        lines += _table(["source", "aspect", "n", "PCC", "SCC", "RMSE", "undefined because"], rows)
        lines.append("")

    if "mdd" in metrics:
        m = metrics["mdd"]
        lines += ["## Mispronunciation detection and diagnosis (seed 002 Table 3)", ""]
        rows = [[r["system"]] + [_num(r["values"].get(c), 3) if c in r["values"] else "" for c in MDD_COLUMNS]
                for r in MDD_ROWS]
        rows.append(["**this run**"] + [_num(m.get(c), 3) for c in MDD_COLUMNS])
        lines += _table(["system", "WER", "PER", "precision", "recall", "F1"], rows)
        c = m.get("counts", {})
        lines += ["", f"Utterances: {m.get('n', 0)} ({m.get('n_words', 0)} reference words, {m.get('n_phones', 0)} "
                  f"heard phones). Detection counts: true acceptance {c.get('ta', 0)}, false rejection "
                  f"{c.get('fr', 0)}, false acceptance {c.get('fa', 0)}, true rejection {c.get('tr', 0)} "
                  f"(correct diagnosis {c.get('correct_diagnosis', 0)}).", ""]
        corr = m.get("per_vs_accuracy", {})
        if corr:
            lines += ["PER vs sentence accuracy (seed 002 fig. 5):", ""]
            rows = []
            for who in ("human", "predicted"):
                if who in corr:
                    rows.append([who, _num(corr[who].get("pcc"), 3), _num(corr[who].get("scc"), 3),
                                 str(corr[who].get("n", 0)), _num(PER_VS_ACCURACY[who], 3)])
            lines += _table(["accuracy from", "PCC", "SCC", "n", "seed 002 PCC"], rows)
            lines.append("")

    tasks = metrics.get("tasks", {})
    if len(tasks) > 1:
        lines += ["## Per task", ""]
        lines += _table(["task", "n", "parse failures"],
                        [[t, str(v["n"]), str(v["parse_failures"])] for t, v in tasks.items()])
        lines.append("")

    for title, key, fmt in (
        ("Parse failures", "failures", lambda f: f"`{f['id']}` ({f['task']}): {f['reason']}"),
        ("Ids not in the reference", "unknown_ids", lambda f: f"`{f}`"),
        ("References never predicted", "unpredicted", lambda f: f"`{f}`"),
        ("Bad prediction lines", "bad_lines", lambda f: f"line {f.get('line')}: {f.get('reason')}"),
        ("Duplicated lines (the last one was scored)", "duplicates", lambda f: f"`{f['id']}` ({f['task']}), line {f.get('line')}"),
    ):
        items = metrics.get(key) or []
        if items:
            lines += [f"## {title} ({len(items)})", ""]
            lines += [f"- {fmt(i)}" for i in items[:20]]
            if len(items) > 20:
                lines.append(f"- ... {len(items) - 20} more in metrics.json")
            lines.append("")

    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def write_report(metrics: dict, path: str | Path, plots: list[str] | None = None) -> Path:
    path = Path(path)
    path.write_text(render_report(metrics, plots), encoding="utf-8")
    return path
