"""Match what a model wrote to the reference by content, not by position.

Why: a model that drops or doubles one word must not shift every later word's scores onto the
wrong word. ``align`` pairs reference items with output items in three passes:

1. the longest order-preserving matches (``difflib.SequenceMatcher``, the same LCS the stdlib
   uses for diffs) — handles dropped, doubled and inserted items;
2. items left over on both sides with the *same* key, in order — handles moved (reordered) items;
3. left-over items whose keys are *similar* (``SequenceMatcher.ratio() >= min_ratio``), best
   first — handles misspelt words or a wrong stress digit on a phone ("IY1" for "IY0").

Items paired nowhere stay unpaired: the parser reports reference items as missing and output
items as extra, instead of guessing.

``edit_alignment`` is the other kind: a minimum-edit path (substitutions, deletions, insertions),
the alignment behind PER, used to say which predicted phone was said where (MDD diagnosis).
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Sequence


def word_match_key(word: str) -> str:
    """The form in which a word of a model's answer is matched to a reference word: case and
    punctuation ignored, letters, digits and inner apostrophes kept ("Bear," == "BEAR")."""
    return "".join(ch for ch in word.upper() if ch.isalnum() or ch == "'").strip("'")


def align(ref: Sequence[str], hyp: Sequence[str], min_ratio: float = 0.6) -> list[tuple[int, int]]:
    """Pairs ``(ref_index, hyp_index)``, each index used at most once, sorted by ``ref_index``."""
    ref, hyp = list(ref), list(hyp)
    pairs: dict[int, int] = {}
    used_hyp: set[int] = set()

    matcher = SequenceMatcher(a=ref, b=hyp, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs[block.a + k] = block.b + k
            used_hyp.add(block.b + k)

    # pass 2: equal keys among the leftovers, in order
    for i, r in enumerate(ref):
        if i in pairs:
            continue
        for j, h in enumerate(hyp):
            if j not in used_hyp and h == r:
                pairs[i] = j
                used_hyp.add(j)
                break

    # pass 3: similar keys among the leftovers, most similar first (ties: nearest in order)
    candidates = []
    for i, r in enumerate(ref):
        if i in pairs:
            continue
        for j, h in enumerate(hyp):
            if j in used_hyp:
                continue
            ratio = SequenceMatcher(a=r, b=h, autojunk=False).ratio()
            if ratio >= min_ratio:
                candidates.append((-ratio, abs(i - j), i, j))
    for _, _, i, j in sorted(candidates):
        if i not in pairs and j not in used_hyp:
            pairs[i] = j
            used_hyp.add(j)

    return sorted(pairs.items())


def edit_alignment(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """A minimum-edit (Levenshtein) alignment of two token sequences, as the path of pairs
    ``(ref_index, hyp_index)`` in order: both set for a match or substitution, ``(i, None)`` for a
    deleted ref token, ``(None, j)`` for an inserted hyp token.

    Why our own and not ``align``: PER counts edits, so phone diagnosis must follow an edit path,
    not the longest common blocks. Ties are broken the same way every time: a match or substitution
    before a deletion before an insertion, read from the end of both sequences."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]), cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    path: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            i, j = i - 1, j - 1
            path.append((i, j))
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            i -= 1
            path.append((i, None))
        else:
            j -= 1
            path.append((None, j))
    return path[::-1]
