"""Mixing corpora for training: Wang et al. 2025's "FT + Private" (SO762 + a private corpus, 2 epochs).

Why a function and not a sampler class: the mix is fixed before training (concatenate, optionally
weight each corpus), so it is just a new ``Corpus``; the trainer shuffles it like any other.

``weight`` per corpus scales how many of its utterances enter the mix: 1 = all once, 2 = every
utterance twice, 0.5 = a seeded random half, 1.5 = all once plus a random half again. Ids stay
unique: an id that also occurs in another corpus is prefixed ``{corpus name}:``, and the k-th
extra copy of an utterance gets ``#k`` appended.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Sequence

from lmm_apa.data.schema import Corpus, LoadFailure, Utterance


def _take(utts: list[Utterance], weight: float, rng: random.Random) -> list[tuple[Utterance, int]]:
    """(utterance, copy number) pairs for ``weight`` times the corpus."""
    if weight < 0:
        raise ValueError(f"corpus weight must be >= 0, got {weight}")
    whole, frac = int(weight), weight - int(weight)
    out = [(u, k) for k in range(whole) for u in utts]
    extra = round(frac * len(utts))
    if extra:
        out += [(u, whole) for u in rng.sample(utts, extra)]
    return out


def mix_corpora(
    corpora: Sequence[Corpus],
    weights: Sequence[float] | None = None,
    seed: int = 0,
    name: str | None = None,
) -> Corpus:
    """Concatenate ``corpora`` (each scaled by its weight), keeping ids unique and every failure."""
    if not corpora:
        raise ValueError("mix_corpora needs at least one corpus")
    weights = list(weights) if weights is not None else [1.0] * len(corpora)
    if len(weights) != len(corpora):
        raise ValueError(f"{len(weights)} weight(s) for {len(corpora)} corpora")
    # Distinct names, so prefixes disambiguate even two corpora with the same folder name.
    names, seen = [], Counter()
    for c in corpora:
        seen[c.name] += 1
        names.append(c.name if seen[c.name] == 1 else f"{c.name}{seen[c.name]}")
    id_count = Counter(u.id for c in corpora for u in {u.id: u for u in c.utterances}.values())
    rng = random.Random(seed)
    utterances: list[Utterance] = []
    failures: list[LoadFailure] = []
    for c, cname, w in zip(corpora, names, weights):
        for u, copy in _take(list(c.utterances), float(w), rng):
            uid = f"{cname}:{u.id}" if id_count[u.id] > 1 else u.id
            if copy:
                uid = f"{uid}#{copy}"
            utterances.append(dataclasses.replace(u, id=uid, corpus=u.corpus if u.corpus != "unknown" else cname))
        failures += [dataclasses.replace(f, id=f"{cname}:{f.id}") for f in c.failures]
    return Corpus(utterances=utterances, failures=failures, name=name or "+".join(names))
