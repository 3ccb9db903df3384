"""Training examples: (utterance, task) pairs with their prompt and target text, audio loaded lazily.

Why the text is built up front and the audio is not: prompts and targets are cheap and their
failures (an utterance lacking the labels a task needs) should be known before the first step;
audio is the memory and time cost, so it is read in ``__getitem__`` (in DataLoader workers when
there are any). A recording that fails to load is recorded in ``skipped.jsonl`` with the reason,
and the next usable example takes its place, so one bad file never stops a run nor leaves a batch
short.

Lengths (for length-grouped batches) are estimated without reading samples: audio seconds from the
file header times the backbone's audio tokens per second (its ``BackboneSpec``), plus the prompt +
target token count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from lmm_apa.data.audio import AudioError, audio_info, load_audio
from lmm_apa.data.schema import Utterance
from lmm_apa.models.backbones import spec_for


@dataclass
class Example:
    utt: Utterance
    task: str
    prompt: str
    target: str  # the chosen response for preference objectives
    rejected: Optional[str] = None
    length: int = 0  # estimated sequence length in tokens (audio + text)


class SkipLog:
    """Append-only ``skipped.jsonl``: one line per (utterance, task) that could not be used."""

    def __init__(self, path: Optional[Path]):
        self.path = Path(path) if path else None
        self.seen: set[tuple[str, str, str]] = set()
        self.count = 0

    def record(self, utt_id: str, task: str, stage: str, reason: str) -> None:
        key = (utt_id, task, stage)
        if key in self.seen:
            return
        self.seen.add(key)
        self.count += 1
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"id": utt_id, "task": task, "stage": stage, "reason": reason})
            with open(self.path, "a") as f:  # O_APPEND: whole short lines, safe across ranks and workers
                f.write(line + "\n")


def build_examples(
    utterances: Sequence[Utterance],
    tasks: Sequence[str],
    skip_log: SkipLog,
    preference: bool = False,
    preference_aspect: Optional[str] = None,
    seed: int = 0,
    keep_star: bool = False,
) -> tuple[list[Example], dict]:
    """Every (utterance, task) the task supports, with prompt and target (and a simulated rejected
    response for preference objectives). ``keep_star``: mdd targets keep ``*`` phones (``get_task``).
    Returns (examples, counts)."""
    from lmm_apa.prompts.tasks import get_task

    examples: list[Example] = []
    counts = {"unsupported": 0, "failed": 0}
    for name in tasks:
        task = get_task(name, keep_star=keep_star)
        for i, utt in enumerate(utterances):
            if not task.supports(utt):
                counts["unsupported"] += 1
                continue
            try:
                prompt = task.instruction(utt)
                if preference:
                    from lmm_apa.train.preference import make_preference_pair

                    target, rejected = make_preference_pair(utt, task, aspect=preference_aspect, seed=seed * 1_000_003 + i)
                else:
                    target, rejected = task.target(utt), None
            except (ValueError, KeyError) as e:
                counts["failed"] += 1
                skip_log.record(utt.id, name, "target", f"{type(e).__name__}: {e}")
                continue
            examples.append(Example(utt, name, prompt, target, rejected))
    return examples, counts


def estimate_lengths(
    examples: list[Example], tokenizer, arch: str, skip_log: SkipLog, max_seconds: Optional[float] = None
) -> list[Example]:
    """Fill ``Example.length``; drop (and record) examples whose audio header is unreadable or too long.
    A recording is checked once, but every (utterance, task) example it drops is recorded, so the
    skip count is right per task."""
    spec = spec_for(arch)
    kept, seconds, why = [], {}, {}
    for ex in examples:
        if ex.utt.id not in seconds:
            try:
                seconds[ex.utt.id] = audio_info(ex.utt.audio).duration
                if max_seconds is not None and seconds[ex.utt.id] > max_seconds:
                    raise AudioError(
                        f"{ex.utt.audio.describe()}: audio is {seconds[ex.utt.id]:.2f} s long, over the {max_seconds:g} s limit"
                    )
            except AudioError as e:
                seconds[ex.utt.id], why[ex.utt.id] = None, str(e)
        if seconds[ex.utt.id] is not None:
            kept.append(ex)
        else:
            skip_log.record(ex.utt.id, ex.task, "audio", why[ex.utt.id])
    if not kept:
        return kept
    texts = [ex.prompt + ex.target for ex in kept]
    if tokenizer is not None:
        n_text = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    else:
        n_text = [len(t) // 4 for t in texts]
    for ex, n in zip(kept, n_text):
        ex.length = spec.audio_tokens(seconds[ex.utt.id]) + n
    return kept


class TrainDataset(torch.utils.data.Dataset):
    """Examples with audio read on access; a failing recording is recorded and replaced by the next
    usable example (deterministically, so resumed runs see the same data)."""

    def __init__(self, examples: list[Example], sampling_rate: int, skip_log: SkipLog, max_seconds: Optional[float] = None):
        if not examples:
            raise ValueError("no training examples")
        self.examples = examples
        self.sampling_rate = sampling_rate
        self.max_seconds = max_seconds
        self.skip_log = skip_log
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> list[int]:
        return [ex.length for ex in self.examples]

    def __getitem__(self, index: int) -> dict:
        n = len(self.examples)
        for k in range(n):
            i = (index + k) % n
            if i in self.bad:
                continue
            ex = self.examples[i]
            try:
                audio = load_audio(ex.utt.audio, target_sr=self.sampling_rate, max_seconds=self.max_seconds)
            except AudioError as e:
                self.bad.add(i)
                self.skip_log.record(ex.utt.id, ex.task, "audio", str(e))
                continue
            return {"id": ex.utt.id, "task": ex.task, "audio": audio, "prompt": ex.prompt,
                    "target": ex.target, "rejected": ex.rejected}
        raise ValueError("every training example's audio failed to load; see skipped.jsonl")
