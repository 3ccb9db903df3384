"""Data-parallel ``lmm-apa predict`` under ``accelerate launch`` or ``torchrun``.

Run the same command under a launcher and each process takes a share of the corpus::

    accelerate launch --num_processes 4 -m lmm_apa.cli predict corpus/ --adapter out/ --out preds.jsonl
    torchrun --nproc-per-node 4 -m lmm_apa.cli predict corpus/ --adapter out/ --out preds.jsonl

Why it is built this way:
- every process loads its own copy of the model on its own device (``accelerate.PartialState``
  picks ``cuda:<local rank>``, or the CPU with ``--cpu``) and decodes the utterances
  ``todo[rank::world]`` (interleaved, so long and short clips spread evenly), writing them to its
  own part file ``<out>.part-<rank>`` line by line, flushed, exactly as one process writes ``<out>``;
- when all are done, process 0 merges the parts into ``<out>`` in corpus order (load failures
  first, then utterances, as the single-process run writes them) through a temporary file and an
  atomic rename, then deletes the parts. The merged file equals the single-process output (tested
  with two CPU processes on the gloo backend);
- resumable: a killed run leaves its parts; a rerun (with any number of processes) counts the ids
  in ``<out>`` and in every part as done, shards only the rest, and merges old and new parts
  together. A part line cut short by the kill is dropped. Ids already in ``<out>`` are never
  written twice, also when a merge was cut off between its rename and the deletion of the parts.

A single process (no launcher) that finds parts of ``<out>`` finishes them the same way
(``resume_parts``): its new lines go to part 0 and every part is merged at the end. Lines are read
by ``infer.records.read_lines``, the same reader a single-process resume uses.

Everything that decides which process does what is in plain functions here (``shard``,
``part_path``, ``merge_parts``), tested without launching processes; ``predict_data_parallel`` ties
them to ``lmm_apa.infer.predict.predict_corpus``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

from lmm_apa.infer.records import done_ids, read_lines

PART_SUFFIX = ".part-"


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE``, set by torchrun and accelerate launch; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard(items: Sequence, rank: int, world: int) -> list:
    """This process's share: every ``world``-th item starting at ``rank`` (corpus order kept)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside a world of {world} processes")
    return list(items[rank::world])


def part_path(out: Path, rank: int) -> Path:
    """The file process ``rank`` writes its lines to."""
    return out.with_name(f"{out.name}{PART_SUFFIX}{rank}")


def part_files(out: Path) -> list[Path]:
    """Every part of ``out`` on disk (from this run or an earlier one with another process count)."""
    return sorted(p for p in out.parent.glob(f"{out.name}{PART_SUFFIX}*") if p.name[len(out.name) + len(PART_SUFFIX):].isdigit())


def done_elsewhere(out: Path) -> set[str]:
    """Ids already written to ``out`` or to any of its parts."""
    ids = {str(r["id"]) for r in read_lines(out)}
    for part in part_files(out):
        ids.update(str(r["id"]) for r in read_lines(part))
    return ids


def merge_parts(out: Path, order: Sequence[str]) -> int:
    """Append every part's lines to ``out`` in ``order`` (ids; unknown ids last, in part order),
    skipping ids ``out`` already holds, through a temporary file and an atomic rename; then delete
    the parts. Returns the number of lines added."""
    parts = part_files(out)
    if not parts:
        return 0
    have = done_ids(out)  # also drops a line cut short by a kill of a single-process run
    kept = out.read_text(encoding="utf-8") if out.is_file() else ""
    rank = {uid: i for i, uid in enumerate(order)}
    new: dict[str, dict] = {}
    for part in parts:
        for rec in read_lines(part):
            uid = str(rec["id"])
            if uid not in have:
                new.setdefault(uid, rec)
    added = sorted(new.values(), key=lambda r: rank.get(str(r["id"]), len(rank)))
    tmp = out.with_name(out.name + ".merging")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(kept)
        for rec in added:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    for part in parts:
        part.unlink()
    return len(added)


class ShardSelector:
    """``select(utts, failures) -> (utts, failures)`` for ``predict_corpus``: this process's share
    of what is not done yet; load failures are written by process 0 alone. It keeps the corpus
    order it was shown (load failures first, then utterances: as the single-process run writes
    them), so process 0 merges the parts without loading the corpus a second time."""

    def __init__(self, done: set[str], rank: int, world: int):
        self.done, self.rank, self.world = done, rank, world
        self.order: list[str] = []

    def __call__(self, utts, failures):
        self.order = [f.id for f in failures] + [u.id for u in utts]
        todo = [u for u in utts if u.id not in self.done]
        fails = [f for f in failures if f.id not in self.done] if self.rank == 0 else []
        return shard(todo, self.rank, self.world), fails


def resume_parts(predict_corpus: Callable, out, **kwargs) -> dict:
    """One process finishing a killed data-parallel run (parts of ``out`` on disk): the ids in
    ``out`` and in every part count as done, the rest is decoded into part 0, then all parts are
    merged into ``out`` in corpus order, as a launched rerun does."""
    out = Path(out)
    select = ShardSelector(done_elsewhere(out), 0, 1)
    summary = predict_corpus(out=part_path(out, 0), select=select, **kwargs)
    summary.update(out=str(out), process=0, processes=1, merged=merge_parts(out, select.order))
    return summary


def predict_data_parallel(predict_corpus: Callable, out, **kwargs) -> dict:
    """Run ``predict_corpus`` as one process of a launched group (see the module docstring).
    Returns this process's summary; process 0's also says how many lines the merge added."""
    if kwargs.get("backend") == "vllm":
        raise ValueError("--backend vllm runs in one process (vLLM spreads a model over GPUs itself); "
                         "launch it without accelerate launch / torchrun")
    import torch
    from accelerate import PartialState

    # CPU processes (no CUDA, or --device cpu) join over gloo; accelerate only does so when told.
    state = PartialState(cpu=not torch.cuda.is_available() or kwargs.get("device") == "cpu")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rank, world = state.process_index, state.num_processes
    done = done_elsewhere(out)  # read by every process before any of them writes
    state.wait_for_everyone()
    if kwargs.get("device") is None and kwargs.get("backbone") is None:
        kwargs["device"] = str(state.device)
    select = ShardSelector(done, rank, world)
    summary = predict_corpus(out=part_path(out, rank), select=select, **kwargs)
    state.wait_for_everyone()
    summary.update(out=str(out), process=rank, processes=world)
    if state.is_main_process:
        summary["merged"] = merge_parts(out, select.order)  # the order this process's own load saw
    state.wait_for_everyone()
    return summary
