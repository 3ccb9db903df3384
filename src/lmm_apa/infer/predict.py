"""``lmm-apa predict``: assess a whole corpus, one JSON line per utterance.

Why it is built this way:
- a bad utterance (unreadable audio, a word no lexicon knows, a clip over the backbone's limit) gets
  an ``"error"`` line and the run goes on; a batch that fails as a whole is retried row by row so only
  the guilty row is marked;
- every line is flushed as soon as it is known, so a killed run loses at most its current batch, and
  a rerun with the same ``--out`` skips the ids already written (a line cut short by the kill is
  dropped first);
- both decoders return the same record (``infer.records``), so ``evaluate`` reads free and
  constrained predictions alike;
- decoding defaults to constrained (as ``assess`` and ``serve`` do): every answer parses (score
  template, or mdd's transcript grammar); each task declares its decodings (``Task.decodings``);
- an adapter whose record lists its training tasks warns when asked for another task.
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
from lmm_apa.infer.records import done_ids, error_record, record
from lmm_apa.models.loading import UntrainedTaskWarning, load_model, untrained_task_warning
from lmm_apa.prompts.tasks import TranscriptTask

BACKENDS = ("hf", "vllm")


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


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------- the command


class _LineWriter:
    """Appends prediction lines to an open file, flushing each (a kill loses at most one batch),
    and counts them for the summary."""

    def __init__(self, f):
        self.f = f
        self.counts = {"written": 0, "errors": 0, "parse_ok": 0}

    def __call__(self, rec: dict) -> None:
        self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.f.flush()
        self.counts["written"] += 1
        if "error" in rec:
            self.counts["errors"] += 1
        elif rec.get("parse_ok"):
            self.counts["parse_ok"] += 1


def _check_options(out, decoding: str, backend: str, batch_size: int) -> None:
    if out is None:
        raise ValueError("predict needs --out (the predictions JSONL file)")
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ValueError("batch size must be >= 1")


def _check_backend_decoding(task, decoding: str, backend: str) -> None:
    """Refuse, before any model loads, a decoding the backend cannot do for ``task``: vLLM
    constrains score templates only (a regex), not a grammar of its own like mdd's transcript."""
    if backend == "vllm" and decoding_for(task, decoding) == "constrained" and type(task) in CONSTRAINED_DECODERS:
        raise ValueError(f"task {task.name!r}: --backend vllm cannot constrain its answers (vLLM constrains score "
                         "templates only); use --decoding free with vllm, or --backend hf for constrained decoding")


def _warn_untrained(adapter, task_name: str) -> list[str]:
    """Warn (stderr, and in the summary) when the adapter was not trained on the task."""
    import warnings

    message = untrained_task_warning(adapter, task_name)
    if message is None:
        return []
    warnings.warn(message, UntrainedTaskWarning, stacklevel=3)
    return [message]


def _corpus_share(source, split, limit, select, out: Path) -> tuple[list, list, set[str]]:
    """``(utterances, load failures, ids already in out)``: this process's share of the corpus
    (the first ``limit`` utterances; ``select`` picks one process's share under data parallelism)."""
    from lmm_apa.data.corpus import load_corpus

    corpus = load_corpus(source, split=split)
    utts, failures = list(corpus.utterances), list(corpus.failures)
    if limit is not None:
        utts = utts[:limit]
    if select is not None:
        utts, failures = select(utts, failures)
    return utts, failures, done_ids(out)


def _run_hf(write, todo: list[Utterance], the_task, decoding: str, backbone, model, adapter, device,
            batch_size: int, lookahead: int | None, progress: bool) -> int:
    """Decode ``todo`` with transformers in batches, writing each line; returns the forward passes."""
    from lmm_apa.infer.constrained import count_forwards

    if backbone is None:
        backbone = load_model(model, adapter, device)
    used = decoding_for(the_task, decoding)
    with _progress(progress, len(todo), f"{the_task.name} / {used}") as advance, count_forwards(backbone.model) as n:
        for chunk in _batches(todo, batch_size):
            for rec in assess_utterances(backbone, the_task, chunk, decoding, lookahead):
                write(rec)
            advance(len(chunk))
    return n[0]


def predict_corpus(
    source,
    model: str | None = None,
    adapter: str | None = None,
    task: str = "full",
    out=None,
    decoding: str = "constrained",
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

    if select is None:
        options = dict(source=source, model=model, adapter=adapter, task=task, out=out, decoding=decoding, split=split,
                       batch_size=batch_size, limit=limit, device=device, backend=backend, backbone=backbone,
                       progress=progress, lookahead=lookahead)
        if distributed.world_size() > 1:
            return distributed.predict_data_parallel(predict_corpus, **options)
        if out is not None and distributed.part_files(Path(out)):  # a killed data-parallel run, resumed alone
            return distributed.resume_parts(predict_corpus, **options)
    from lmm_apa.prompts.tasks import Task, get_task

    _check_options(out, decoding, backend, batch_size)
    the_task = task if isinstance(task, Task) else get_task(task)  # a Task: e.g. without its control token
    _check_backend_decoding(the_task, decoding, backend)
    out = Path(out)
    warned = _warn_untrained(adapter, the_task.name)
    if backend == "vllm":
        from lmm_apa.infer.vllm_backend import check_vllm

        check_vllm()
    utts, failures, already = _corpus_share(source, split, limit, select, out)
    todo = [u for u in utts if u.id not in already]
    todo_failures = [f for f in failures if f.id not in already and (limit is None)]
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    forward_passes = 0
    with open(out, "a", encoding="utf-8") as f:
        write = _LineWriter(f)
        for fail in todo_failures:  # utterances the reader could not load: recorded, not lost
            write(error_record(fail.id, the_task.name, f"load failure: {fail.reason}"))
        if todo and backend == "vllm":
            from lmm_apa.infer.vllm_backend import predict_vllm

            for rec in predict_vllm(todo, model=model, adapter=adapter, task=the_task, decoding=decoding, batch_size=batch_size):
                write(rec)
        elif todo:
            forward_passes = _run_hf(write, todo, the_task, decoding, backbone, model, adapter, device, batch_size,
                                     lookahead, progress)
    summary = {"out": str(out), "task": the_task.name, "decoding": decoding_for(the_task, decoding), "backend": backend,
               "utterances": len(utts) + (len(failures) if limit is None else 0), "already_done": len(already),
               **write.counts, "forward_passes": forward_passes, "seconds": round(time.perf_counter() - t0, 3)}
    if warned:
        summary["warnings"] = warned
    return summary


class _progress:
    """A rich progress bar on stderr (quiet when ``enabled`` is False)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from lmm_apa.console import stderr_console

        self.bar = Progress(
            TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=stderr_console(), transient=False,
        )
        self.bar.__enter__()
        tid = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(tid, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
        return False
