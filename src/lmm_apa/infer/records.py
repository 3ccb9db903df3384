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


def done_ids(out: Path) -> set[str]:
    """Ids already written to ``out``. A last line cut short by a kill (no newline, or not JSON) is
    removed from the file so the rerun appends cleanly."""
    if not out.is_file():
        return set()
    data = out.read_bytes()
    ids: set[str] = set()
    good_end = 0
    pos = 0
    for line in data.splitlines(keepends=True):
        end = pos + len(line)
        stripped = line.strip()
        if stripped:
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("cut short")
                ids.add(str(json.loads(stripped)["id"]))
            except (ValueError, KeyError, TypeError):
                if end == len(data):  # only the last line may be broken (a kill mid-write)
                    break
                raise ValueError(f"{out}: line at byte {pos} is not a prediction line; refusing to resume into it")
        good_end = end
        pos = end
    if good_end < len(data):
        with open(out, "r+b") as f:
            f.truncate(good_end)
    return ids
