"""``lmm-apa predict``: assess a whole corpus, one JSON line per utterance.

Why it is built this way:
- a bad utterance (unreadable audio, a word no lexicon knows, a clip over the backbone's limit) gets
  an ``"error"`` line and the run goes on; a batch that fails as a whole is retried row by row so only
  the guilty row is marked;
- every line is flushed as soon as it is known, so a killed run loses at most its current batch, and
  a rerun with the same ``--out`` skips the ids already written (a line cut short by the kill is
  dropped first);
- both decoders return the same record, so ``evaluate`` reads free and constrained predictions alike:
  ``{"id", "task", "output", "decoding", "scores", "expected"?, "parse_ok", "error"?}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from lmm_apa.data.schema import Utterance
from lmm_apa.infer.generate import DECODINGS, Decoded, decode_batch
from lmm_apa.infer.mdd_grammar import decode_transcripts
from lmm_apa.prompts.tasks import TranscriptTask
from lmm_apa.prompts.template import key_to_str

BACKENDS = ("hf", "vllm")


# --------------------------------------------------------------------------- model loading


def adapter_base(adapter: str | Path) -> str | None:
    """The base model an adapter folder was trained from (``lmm_apa_adapter.json``), if recorded."""
    info = Path(adapter) / "lmm_apa_adapter.json"
    if info.is_file():
        return json.loads(info.read_text()).get("base") or None
    return None


def load_model(model: str | None, adapter: str | None = None, device: str | None = None, dtype=None):
    """A ready backbone: ``model`` (hub id or path; when omitted, the adapter's recorded base, else
    Qwen2-Audio-7B-Instruct), with ``adapter`` on top when given (zero-shot otherwise)."""
    from lmm_apa.models.backbones import load_backbone

    if adapter is not None and not Path(adapter).exists():
        raise FileNotFoundError(f"adapter folder not found: {adapter}")
    if model is None and adapter is not None:
        model = adapter_base(adapter)
    try:
        backbone = load_backbone(model, device=device, dtype=dtype)
    except OSError as e:  # not found locally and not reachable on the hub
        raise ValueError(f"cannot load model {model or 'Qwen/Qwen2-Audio-7B-Instruct (default)'}: {e}") from e
    if adapter is not None:
        from lmm_apa.models.adapters import load_adapter

        load_adapter(backbone, adapter)
        backbone.model.eval()
    return backbone


# --------------------------------------------------------------------------- one batch


@dataclass
class Prepared:
    utt: Utterance
    audio: object
    prompt: str
    template: object
    fallback: str


def prepare(backbone, task, utt: Utterance) -> Prepared:
    """Audio, instruction and template of one utterance; raises ValueError (AudioError, lexicon
    errors, missing phones) with a message naming the cause."""
    from lmm_apa.data.audio import load_audio

    if not utt.words:
        raise ValueError(f"utterance {utt.id}: no reference words")
    template = task.template(utt)
    audio = load_audio(utt.audio, target_sr=backbone.sampling_rate, max_seconds=backbone.max_audio_seconds)
    fallback = utt.text + " " + " ".join(p for w in utt.words for p in w.phones)
    return Prepared(utt, audio, task.instruction(utt), template, fallback)


def record(utt: Utterance, task, decoded: Decoded) -> dict:
    """The prediction line of one decoded utterance (scores on the model scale, key_to_str names)."""
    parsed = task.parse(decoded.output, utt)
    rec = {"id": utt.id, "task": task.name, "output": decoded.output, "decoding": decoded.decoding}
    rec.update(task.answer_fields(parsed))
    if decoded.expected is not None:
        rec["expected"] = {key_to_str(k): round(float(v), 5) for k, v in decoded.expected.items()}
    rec["parse_ok"] = bool(parsed.ok)
    return rec


def error_record(uid: str, task_name: str, message: str) -> dict:
    return {"id": uid, "task": task_name, "output": "", "error": message}


def decoding_for(task, decoding: str) -> str:
    """The decoding ``task`` uses when ``decoding`` is asked: that one, or a ValueError naming the
    task's decodings (never a silent switch)."""
    return task.decoding_for(decoding)


# A task whose constrained answer is not a score template (the mdd transcript's grammar)
# registers its batch decoder here, keyed by its task class:
# ``decoder(backbone, task, prepared: list[Prepared], lookahead) -> list[Decoded]``.
CONSTRAINED_DECODERS: dict[type, Callable] = {TranscriptTask: decode_transcripts}


def decode_prepared(backbone, task, prepared: Sequence[Prepared], decoding: str, lookahead: int | None = None) -> list[Decoded]:
    """One batch of prepared rows through ``task``'s decoder for ``decoding`` (already resolved by
    ``decoding_for``): a registered constrained decoder for the task's class, else the shared
    free / template-constrained ``decode_batch``."""
    custom = CONSTRAINED_DECODERS.get(type(task)) if decoding == "constrained" else None
    if custom is not None:
        return custom(backbone, task, list(prepared), lookahead)
    return decode_batch(
        backbone, [p.audio for p in prepared], [p.prompt for p in prepared], [p.template for p in prepared],
        decoding, [p.fallback for p in prepared], lookahead=lookahead,
    )


def assess_utterances(backbone, task, utts: Sequence[Utterance], decoding: str, lookahead: int | None = None) -> list[dict]:
    """Records for a batch of utterances, in order: a failure in one row never takes the others down."""
    decoding = decoding_for(task, decoding)
    out: list[dict | None] = [None] * len(utts)
    ready: list[tuple[int, Prepared]] = []
    for i, utt in enumerate(utts):
        try:
            ready.append((i, prepare(backbone, task, utt)))
        except Exception as e:  # noqa: BLE001 - recorded per line, the run goes on
            out[i] = error_record(utt.id, task.name, f"{type(e).__name__}: {e}")

    def run(items):
        decoded = decode_prepared(backbone, task, [p for _, p in items], decoding, lookahead)
        for (i, p), d in zip(items, decoded):
            out[i] = record(p.utt, task, d)

    if ready:
        try:
            run(ready)
        except Exception:  # noqa: BLE001 - find the row at fault
            for item in ready:
                try:
                    run([item])
                except Exception as e:  # noqa: BLE001
                    out[item[0]] = error_record(item[1].utt.id, task.name, f"{type(e).__name__}: {e}")
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- resume


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


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- the command


def predict_corpus(
    source,
    model: str | None = None,
    adapter: str | None = None,
    task: str = "full",
    out=None,
    decoding: str = "free",
    split: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
    backend: str = "hf",
    backbone=None,
    progress: bool = True,
    lookahead: int | None = None,
    select: Callable | None = None,
) -> dict:
    """Assess every utterance of ``source`` into the JSONL file ``out`` (resumed if it exists) and
    return a summary. ``backbone`` may be a loaded one (tests, the demo); otherwise ``model`` /
    ``adapter`` are loaded. Under ``accelerate launch`` / ``torchrun`` the processes share the corpus
    (``lmm_apa.infer.distributed``; ``select`` picks one process's share there)."""
    from lmm_apa.infer import distributed

    if select is None and distributed.world_size() > 1:
        return distributed.predict_data_parallel(
            predict_corpus, source=source, model=model, adapter=adapter, task=task, out=out, decoding=decoding,
            split=split, batch_size=batch_size, limit=limit, device=device, backend=backend, backbone=backbone,
            progress=progress, lookahead=lookahead,
        )
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.prompts.tasks import Task, get_task

    if out is None:
        raise ValueError("predict needs --out (the predictions JSONL file)")
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ValueError("batch size must be >= 1")
    the_task = task if isinstance(task, Task) else get_task(task)  # a Task: e.g. without its control token
    out = Path(out)
    if backend == "vllm":
        from lmm_apa.infer.vllm_backend import check_vllm

        check_vllm()
    corpus = load_corpus(source, split=split)
    utts = list(corpus.utterances)
    failures = list(corpus.failures)
    if limit is not None:
        utts = utts[:limit]
    if select is not None:
        utts, failures = select(utts, failures)
    already = done_ids(out)
    todo = [u for u in utts if u.id not in already]
    todo_failures = [f for f in failures if f.id not in already and (limit is None)]
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "errors": 0, "parse_ok": 0}
    forward_passes = 0

    def write(f, rec: dict) -> None:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        counts["written"] += 1
        if "error" in rec:
            counts["errors"] += 1
        elif rec.get("parse_ok"):
            counts["parse_ok"] += 1

    with open(out, "a", encoding="utf-8") as f:
        for fail in todo_failures:  # utterances the reader could not load: recorded, not lost
            write(f, error_record(fail.id, the_task.name, f"load failure: {fail.reason}"))
        if todo:
            if backend == "vllm":
                from lmm_apa.infer.vllm_backend import predict_vllm

                for rec in predict_vllm(todo, model=model, adapter=adapter, task=the_task, decoding=decoding, batch_size=batch_size):
                    write(f, rec)
            else:
                from lmm_apa.infer.constrained import count_forwards

                if backbone is None:
                    backbone = load_model(model, adapter, device)
                with _progress(progress, len(todo), f"{the_task.name} / {decoding}") as advance, count_forwards(backbone.model) as n:
                    for chunk in _batches(todo, batch_size):
                        for rec in assess_utterances(backbone, the_task, chunk, decoding, lookahead):
                            write(f, rec)
                        advance(len(chunk))
                forward_passes = n[0]
    return {
        "out": str(out),
        "task": the_task.name,
        "decoding": decoding_for(the_task, decoding),
        "backend": backend,
        "utterances": len(utts) + (len(failures) if limit is None else 0),
        "already_done": len(already),
        "written": counts["written"],
        "errors": counts["errors"],
        "parse_ok": counts["parse_ok"],
        "forward_passes": forward_passes,
        "seconds": round(time.perf_counter() - t0, 3),
    }


class _progress:
    """A rich progress bar on stderr (quiet when ``enabled`` is False)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self.bar.__enter__()
        tid = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(tid, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
