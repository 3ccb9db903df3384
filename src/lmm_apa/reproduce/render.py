"""A reproduced table in the paper's layout: for each row the paper's numbers, ours and the
difference (ours - paper), as ``table.md`` and ``table.json``.

Correlations whose p-value is not under 0.05 are underlined, the way Ahn & Nam 2025 mark them in
their Table 3 (Wang et al. 2025 print no p-values; the same mark is used in their tables so a
reader sees which of our correlations could be chance). ``table.json`` holds every figure with its
p-value, the row's status and, for a failed row, why.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from lmm_apa.evaluate.metrics import SIGNIFICANCE_LEVEL
from lmm_apa.reproduce.tables import Column, Row, Table


def _lookup(metrics: Optional[dict], column: Column) -> Optional[dict]:
    node = metrics
    for part in column.metric:
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return None
    if column.figure == "value":
        return {"value": node}
    if column.figure == "rmse":
        return {"value": node.get("rmse")}
    out = {"pcc": node.get("pcc"), "p": node.get("p")}
    if column.figure == "pcc/scc":
        out["scc"] = node.get("scc")
    return out


def _published(row: Row, column: Column) -> Optional[dict]:
    v = row.published.get(column.key)
    if v is None:
        return None
    if column.figure == "pcc/scc":
        pcc, scc = v if isinstance(v, tuple) else (v, None)
        return {"pcc": pcc, "scc": scc}
    return {"pcc": v} if column.figure == "pcc" else {"value": v}


def _diff(ours: Optional[dict], paper: Optional[dict]) -> Optional[dict]:
    if not ours or not paper:
        return None
    out = {k: ours[k] - paper[k] for k in ("pcc", "scc", "value")
           if ours.get(k) is not None and paper.get(k) is not None}
    return out or None


def _fmt(x, digits: int, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _as_printed(x) -> str:
    """A published number as the papers print it: the fewest decimals, at least two, that give its
    value (Ahn & Nam 2025 print 0.97 and -0.0493 in one row; Wang et al. 2025 print 0.70)."""
    if x is None:
        return "-"
    return next((s for d in range(2, 6) if float(s := f"{x:.{d}f}") == x), repr(x))


def _cell(figures: Optional[dict], column: Column, digits: int, signed: bool = False, printed: bool = False) -> str:
    if not figures:
        return "-"
    fmt = _as_printed if printed else (lambda x: _fmt(x, digits, signed))
    if column.figure in ("value", "rmse"):
        return fmt(figures.get("value"))
    pcc = fmt(figures.get("pcc"))
    p = figures.get("p")
    if p is not None and p >= SIGNIFICANCE_LEVEL:
        pcc = f"<u>{pcc}</u>"
    if column.figure == "pcc":
        return pcc
    return f"{pcc} / {fmt(figures.get('scc'))}"


def row_json(table: Table, row: Row, run) -> dict:
    """One row: published, ours and the difference per column, plus status and failures."""
    out = {"label": row.label, "reference": row.reference}
    if table.extra_header:
        out[table.extra_header] = row.extra
    if row.note:
        out["note"] = row.note
    evals = sorted(set(row.sources.values()), key=list(row.sources.values()).index)
    if not row.reference:
        metrics = {e: run.finished_metrics(e) for e in evals}
        failures = [run.failed[f"eval:{e}"] for e in evals if f"eval:{e}" in run.failed]
        done = [e for e in evals if metrics[e] is not None]
        out["status"] = "failed" if failures else ("finished" if len(done) == len(evals) else "not run")
        if failures:
            out["errors"] = failures
        out["evals"] = {e: str(run.eval_dir(e)) for e in evals}
    cells = {}
    for column in table.columns:
        paper = _published(row, column)
        cell = {"published": paper}
        if not row.reference:
            ours = _lookup(metrics.get(row.sources.get(column.key)), column)
            cell.update(ours=ours, diff=_diff(ours, paper))
        cells[column.key] = cell
    out["cells"] = cells
    return out


def table_json(table: Table, run) -> dict:
    inputs = run.inputs
    return {
        "table": table.name, "paper": table.paper, "title": table.title,
        "model": inputs.model, "corpus": str(inputs.corpus), "smoke": inputs.smoke, "decoding": inputs.decoding,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "columns": [{"key": c.key, "header": c.header, "figure": c.figure, "metric": list(c.metric)}
                    for c in table.columns],
        "rows": [row_json(table, r, run) for r in table.rows],
    }


def render_markdown(table: Table, data: dict) -> str:
    digits = 3 if table.marks_p else 2
    header = [table.first_header] + ([table.extra_header] if table.extra_header else []) + \
             [c.header + (" (PCC/SCC)" if c.figure == "pcc/scc" else "") for c in table.columns]
    lines = [f"# {table.paper}, {table.title}", "",
             f"Reproduced with `{data['model']}` on `{data['corpus']}` (test split), {data['decoding']} decoding"
             + (" — **smoke run: tiny random model, synthetic corpus; the figures check the pipeline only**"
                if data["smoke"] else "") + ".", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes = []
    for row in data["rows"]:
        extra = [row.get(table.extra_header, "")] if table.extra_header else []
        columns = table.columns
        if row["reference"]:
            lines.append("| " + " | ".join([f"{row['label']} (published)"] + extra
                                            + [_cell(row["cells"][c.key]["published"], c, digits, printed=True)
                                               for c in columns]) + " |")
            continue
        for kind, key, signed in (("paper", "published", False), ("ours", "ours", False), ("Δ", "diff", True)):
            if kind != "paper" and row["status"] == "failed" and not any(row["cells"][c.key].get(key) for c in columns):
                cells = ["failed"] * len(columns) if kind == "ours" else ["-"] * len(columns)
            else:
                cells = [_cell(row["cells"][c.key].get(key), c, digits, signed, printed=kind == "paper") for c in columns]
            lines.append("| " + " | ".join([f"{row['label']} ({kind})"] + extra + cells) + " |")
        for err in row.get("errors", []):
            notes.append(f"- **{row['label']}{' epoch ' + row.get(table.extra_header, '') if table.extra_header else ''}"
                         f" failed**: {err}")
        if row.get("note"):
            notes.append(f"- {row['label']}: {row['note']}")
    lines += ["", "Underlined: a PCC whose p-value is not under 0.05 (Ahn & Nam 2025's mark; ours only, the "
              "published p-values are not given). Δ = ours − paper. \"-\": not reported / undefined.", ""]
    if notes:
        lines += ["## Notes", ""] + list(dict.fromkeys(notes)) + [""]
    return "\n".join(lines)


def write_table(table: Table, run, out: Path) -> dict:
    """``out/table.json`` and ``out/table.md`` (each written whole, then renamed); returns the JSON."""
    data = table_json(table, run)
    for name, text in (("table.json", json.dumps(data, indent=2) + "\n"), ("table.md", render_markdown(table, data))):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return data
