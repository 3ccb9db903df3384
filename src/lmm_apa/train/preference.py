"""Simulated preference pairs for SimPO / DPO (Wang et al. 2025, section 2.2).

Why simulated: no corpus has human preference judgements between two score sheets. Wang et al. 2025 keep
the human target as the chosen answer and make the rejected one by moving the *target aspect's*
scores by 2 to 4 points, then repairing the scores that depend on them so the negative is a
plausible, self-consistent sheet that is wrong only in the aspect being taught. The paper states
the rules in words; the exact arithmetic here is ours and is the following (all on the model's
0-10 scale, integers as written in the target, ``round`` = half away from zero):

1. Target aspect. Every slot of the chosen aspect gets its own random change: magnitude
   uniform in {2, 3, 4}, sign uniform in {-1, +1}. If ``value + change`` leaves 0-10 the sign is
   flipped, so the negative always differs by the full 2-4 (on 0-10 a flip never leaves the scale).
   Stress (5 or 10) cannot move by 2-4: every word's stress is flipped 10 <-> 5 instead.
2. Phone -> word -> sentence (only when phone accuracy is the target): word ``i`` accuracy changes
   by ``round(mean of its phones' changes)`` (unchanged phones count 0), clipped to 0-10; sentence
   accuracy changes by ``round(mean over all words of the word accuracy changes)``, clipped.
   Word accuracy as the target moves sentence accuracy by the same mean rule.
3. Word totals follow accuracy and stress: word total changes by
   ``round(d_acc + 0.4 * d_stress)`` (a stress flip alone is worth 2 points), at least 1 in the
   direction of ``d_acc + 0.4 * d_stress`` when that is not 0; clipped to 0-10.
4. The sentence total follows accuracy, fluency and prosody: it changes by
   ``round((d_acc + d_flu + d_pro) / 3)``, at least 1 in the direction of the sum when the sum is
   not 0; clipped. Completeness and the totals themselves move nothing else.

Only slots the task's template has are touched (``word-accuracy`` has no totals to repair).
Everything is a pure function of the values and a numpy ``Generator``; ``make_preference_pair``
seeds it from ``(seed, crc32(utterance id))`` so a pair is the same on every run and machine.
"""

from __future__ import annotations

import math
import zlib
from typing import Union

import numpy as np

from lmm_apa.data.schema import Utterance
from lmm_apa.prompts.tasks import Task, get_task
from lmm_apa.prompts.template import STRESS_CHOICES, SlotKey, Template, render

Key = SlotKey
Aspect = Union[str, tuple[str, str]]
LO, HI = 0, 10


def round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _follow(change: float) -> int:
    """A dependent total's change: rounded, but at least 1 in the same direction when non-zero."""
    if change == 0:
        return 0
    r = round_half_away(change)
    return r if r != 0 else int(math.copysign(1, change))


def _clip(v: int) -> int:
    return max(LO, min(HI, v))


def parse_aspect(aspect: Aspect) -> tuple[str, str]:
    """``"phone.accuracy"`` or ``("phone", "accuracy")`` -> ``("phone", "accuracy")``."""
    if isinstance(aspect, str):
        parts = aspect.split(".")
        if len(parts) != 2:
            raise ValueError(f"aspect {aspect!r}: write it as level.aspect, e.g. 'word.accuracy'")
        return parts[0], parts[1]
    level, name = aspect
    return str(level), str(name)


def simulate_rejected_values(values: dict[Key, float], template: Union[Task, Template, list], aspect: Aspect,
                             rng: np.random.Generator) -> dict[Key, int]:
    """The rejected answer's values: ``values`` (the chosen target's, any scale-0-10 numbers) with
    the target ``aspect`` moved and its dependants repaired (rules in the module docstring).

    ``template`` gives the slots that exist: a ``Template``, or a list of slot keys (a ``Task``
    is accepted when ``values`` already holds every slot of it)."""
    if isinstance(template, Template):
        keys = [s.key for s in template.slots]
    elif isinstance(template, Task):
        keys = list(values)
    else:
        keys = list(template)
    level, name = parse_aspect(aspect)
    base = {k: int(round(float(values[k]))) for k in keys}  # as the target writes them
    new = dict(base)
    targets = [k for k in keys if k[0] == level and k[1] == name]
    if not targets:
        raise ValueError(f"aspect {level}.{name} has no slot in this answer")

    for k in targets:
        if (level, name) == ("word", "stress"):
            new[k] = STRESS_CHOICES[1] if base[k] == STRESS_CHOICES[0] else STRESS_CHOICES[0]
            continue
        change = int(rng.integers(2, 5)) * (1 if rng.random() < 0.5 else -1)
        if not LO <= base[k] + change <= HI:
            change = -change
        new[k] = _clip(base[k] + change)

    def delta(k: Key) -> int:
        return new[k] - base[k] if k in new else 0

    word_ids = sorted({k[2] for k in keys if k[0] == "word"})
    phone_moved = level == "phone"
    word_acc_moved = phone_moved or (level, name) == ("word", "accuracy")
    if phone_moved:  # rule 2: phone -> word accuracy
        for i in word_ids:
            phone_changes = [delta(k) for k in keys if k[0] == "phone" and k[2][0] == i]
            acc = SlotKey.word("accuracy", i)
            if acc in new and phone_changes:
                new[acc] = _clip(base[acc] + round_half_away(sum(phone_changes) / len(phone_changes)))
    if word_acc_moved:  # rule 2: word accuracy -> sentence accuracy
        acc = SlotKey.sentence("accuracy")
        word_changes = [delta(SlotKey.word("accuracy", i)) for i in word_ids]
        if acc in new and word_changes:
            new[acc] = _clip(base[acc] + round_half_away(sum(word_changes) / len(word_changes)))
    if word_acc_moved or (level, name) == ("word", "stress"):  # rule 3: word totals
        for i in word_ids:
            tot = SlotKey.word("total", i)
            if tot in new:
                change = delta(SlotKey.word("accuracy", i)) + 0.4 * delta(SlotKey.word("stress", i))
                new[tot] = _clip(base[tot] + _follow(change))
    if word_acc_moved or (level == "sentence" and name in ("accuracy", "fluency", "prosodic")):  # rule 4
        tot = SlotKey.sentence("total")
        if tot in new:
            change = sum(delta(SlotKey.sentence(a)) for a in ("accuracy", "fluency", "prosodic")) / 3
            new[tot] = _clip(base[tot] + _follow(change))
    return new


def make_preference_pair(utt: Utterance, task: Union[Task, str], aspect: Aspect | None = None,
                         seed: int = 0) -> tuple[str, str]:
    """``(chosen, rejected)`` answer texts for one utterance: chosen is the human target,
    rejected the same sheet with ``aspect`` (default: one of the task's aspects, drawn at random
    among those the utterance labels) moved by 2-4 and its dependants repaired.
    ValueError when the task has no scores (``mdd``) or the utterance lacks labels."""
    task = get_task(task) if isinstance(task, str) else task
    if not task.aspects:
        raise ValueError(f"task {task.name!r} has no scores to move; preference pairs need a score task")
    chosen = task.target(utt)  # raises ValueError naming the missing labels
    template = task.template(utt)
    rng = np.random.default_rng([int(seed), zlib.crc32(utt.id.encode("utf-8"))])
    if aspect is None:
        aspect = task.aspects[int(rng.integers(len(task.aspects)))]
    if isinstance(aspect, str) and "." not in aspect:  # a bare name, e.g. "fluency"
        matches = [a for a in task.aspects if a[1] == aspect]
        if len(matches) != 1:
            raise ValueError(f"aspect {aspect!r} is {'ambiguous' if matches else 'unknown'} for task "
                             f"{task.name!r}; write level.aspect, one of "
                             + ", ".join(f"{a}.{b}" for a, b in task.aspects))
        aspect = matches[0]
    level, name = parse_aspect(aspect)
    if (level, name) not in task.aspects:
        raise ValueError(f"task {task.name!r} has no aspect {level}.{name}; it has "
                         + ", ".join(f"{a}.{b}" for a, b in task.aspects))
    rejected_values = simulate_rejected_values(task.reference_values(utt), template, (level, name), rng)
    return chosen, render(template, rejected_values)
