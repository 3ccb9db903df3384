"""Prediction lines: what one assessed utterance becomes in a predictions JSONL file, and how a
rerun finds the lines already written.

Why a module of its own: both decoding backends (transformers in ``predict``, vLLM in
``vllm_backend``) write the same lines, so ``evaluate`` reads them alike; keeping the line format
here lets each backend import it without importing the other.

A line: ``{"id", "task", "output", "decoding", <the task's answer fields>, "expected"?, "parse_ok"}``
(answer fields: ``scores`` for score tasks, ``word_transcript`` / ``phone_transcript`` for mdd), or
``{"id", "task", "output": "", "error"}`` for an utterance that could not be assessed.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmm_apa.data.schema import Utterance
from lmm_apa.prompts.template import key_to_str


def record(utt: Utterance, task, decoded) -> dict:
    """The prediction line of one decoded utterance (``decoded``: an ``infer.generate.Decoded``;
    scores on the model scale, ``key_to_str`` names)."""
    parsed = task.parse(decoded.output, utt)
    rec = {"id": utt.id, "task": task.name, "output": decoded.output, "decoding": decoded.decoding}
    rec.update(task.answer_fields(parsed))
    if decoded.expected is not None:
        rec["expected"] = {key_to_str(k): round(float(v), 5) for k, v in decoded.expected.items()}
    rec["parse_ok"] = bool(parsed.ok)
    return rec


def error_record(uid: str, task_name: str, message: str) -> dict:
    """The line of an utterance that could not be assessed (the run goes on)."""
    return {"id": uid, "task": task_name, "output": "", "error": message}


def _scan(path: Path) -> tuple[list[dict], int]:
    """``(lines, good_end)``: the prediction lines of ``path`` and the byte offset where its last
    good line ends. Only the last line may be broken (cut short by a kill: no newline, or not JSON)
    and is left out; any other bad line is an error naming the file and the line."""
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    recs: list[dict] = []
    good_end = pos = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        end = pos + len(line)
        if line.strip():
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("cut short (no newline)")
                rec = json.loads(line)
                str(rec["id"])
            except (ValueError, KeyError, TypeError) as e:
                if end == len(data):  # only the last line may be broken (a kill mid-write)
                    break
                raise ValueError(f"{path}: line {number} is not a prediction line ({e}); refusing to use it") from e
            recs.append(rec)
        good_end = pos = end
    return recs, good_end


def read_lines(path: Path) -> list[dict]:
    """The prediction lines of ``path`` (none if it is missing), a broken last line left out (see
    ``_scan``). The one reader of predictions files that a run resumes or merges."""
    return _scan(path)[0]


def done_ids(out: Path) -> set[str]:
    """Ids already written to ``out``. A broken last line (a kill mid-write) is removed from the
    file so the rerun appends cleanly."""
    recs, good_end = _scan(out)
    if out.is_file() and good_end < out.stat().st_size:
        with open(out, "r+b") as f:
            f.truncate(good_end)
    return {str(r["id"]) for r in recs}
