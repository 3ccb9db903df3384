"""Template-constrained and expected-score decoding.

Why: in an APA answer the words, phones, slashes and spaces are already known from the reference;
only the scores are unknown. So the decoder forces the literal text and decodes each score slot over
its valid values only (0-10, stress 5 or 10). Every output parses and lines up with the reference,
and one forward pass per slot replaces one per generated token.

Exact candidate probabilities. A score may span several tokens ("10" is "1","0" for Qwen2, one token
for Phi-4), and "1" is a prefix of "10", so the probability of the choice "1" is not P("1"): it is
P("1") * P(next literal's first token | "1"). In general the probability of choice ``c`` is the
product of the conditional probabilities of the tokens of ``text + c + next literal`` from the first
token that differs between the choices up to and including the first token that reaches past the
value (the boundary token; the answer terminator when the slot ends the answer). These token
sequences are prefix-free, so they are disjoint events and the renormalised distribution over the
choices is exact under the tokenizer's canonical tokenization.

Tokenization is never guessed from pieces: every candidate's text is tokenized as a whole, the way
the training target is, so the token ids the decoder commits equal ``tokenizer(render(template,
values))`` whatever the tokenizer merges across a slot boundary (a space that attaches to a digit in
GPT-2-style regexes included).

How the passes are spent. After one prefill of the prompt (audio included, left-padded batch), each
slot costs ONE forward per batch: the chunk holds the tokens now known (the previous slot's chosen
value and the literal text up to this slot) followed by a small token tree with every candidate's
tokens (tree attention through a custom 4D mask: each node sees the context and its own ancestors
only). The tree's logits give every candidate's exact probability; the tree is then cropped off the
KV cache, which is otherwise reused across slots. Rows with different templates advance in lock step;
padding inside a chunk is masked and keeps no position.

Look-ahead (``lookahead=N``): the same forward also carries the next N slots, each planned as if the
slots before it took a guessed value (the row's last value for that aspect: scores run in streaks).
Where the argmax equals the guess, the next slot was computed in its true context and is kept; from
the first wrong guess on, the rest is dropped and planned again. Only the number of forwards changes,
never a result (tested against one-slot-per-forward decoding and brute force).
"""

from __future__ import annotations

import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lmm_apa.models.compat import cache_kwargs, output_cache
from lmm_apa.models.logits import logits_only_at
from lmm_apa.prompts.template import Slot, Template, format_score


@dataclass
class DecodeResult:
    """One row's answer. ``values`` are the argmax choices, ``expected`` the expectations, ``probs``
    each slot's distribution over its choices (all keyed by ``Slot.key``)."""

    text: str
    values: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    probs: dict = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- template walking


def template_segments(template: Template) -> tuple[list[tuple[str, Slot]], str]:
    """``[(literal before slot, slot), ...]`` and the trailing literal. Two slots with no literal
    between them cannot be decoded one by one (the boundary of the first is unknown): refused."""
    segments: list[tuple[str, Slot]] = []
    pending = ""
    for piece in template.pieces:
        if isinstance(piece, Slot):
            if segments and pending == "":
                raise ValueError(f"template has two adjacent slots ({segments[-1][1].key}, {piece.key}) with no text between them")
            segments.append((pending, piece))
            pending = ""
        else:
            pending += piece
    return segments, pending


# --------------------------------------------------------------------------- tokenization


_STATE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
MEMO_LIMIT = 200_000  # texts remembered per tokenizer (a few tens of MB at most)


def _tokenizer_state(tokenizer) -> dict:
    """What the decoder keeps per tokenizer across calls, dropped with the tokenizer: the
    tokenization memo and the padding-free backend. A tokenizer that cannot be weakly referenced
    gets fresh state each call."""
    try:
        return _STATE.setdefault(tokenizer, {})
    except TypeError:
        return {}


def _plain_backend(tokenizer):
    """A copy of a fast tokenizer's Rust backend with padding and truncation off. Not the backend
    itself: the transformers wrapper leaves its last call's padding / truncation switched on in it
    (a padded ``tokenizer(prompts, padding=True)`` would pad our candidate texts to one length)."""
    state = _tokenizer_state(tokenizer)
    if "backend" not in state:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        state["backend"] = backend
    return state["backend"]


def _tokenize(tokenizer, texts: list[str], memo: dict | None = None) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Token ids and character offsets of each text (fresh lists: callers extend them). ``memo``
    (see ``tokenization_memo``) remembers texts already tokenized: score slots often share their
    windowed text (the same word or phone before the same score). A fast tokenizer's Rust backend
    is called directly (the same encoding ``tokenizer(texts, add_special_tokens=False)`` returns,
    without the wrapper's per-call cost, a third of the decoder's tokenization time)."""
    key = tuple(texts)
    hit = memo.get(key) if memo is not None else None
    if hit is None:
        backend = _plain_backend(tokenizer)
        if backend is not None:
            encs = backend.encode_batch(texts, add_special_tokens=False)
            hit = ([tuple(e.ids) for e in encs], [tuple(e.offsets) for e in encs])
        else:  # a slow (Python) tokenizer
            enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
            hit = ([tuple(x) for x in enc["input_ids"]], [tuple(tuple(o) for o in x) for x in enc["offset_mapping"]])
        if memo is not None:
            memo[key] = hit
    return [list(x) for x in hit[0]], [list(x) for x in hit[1]]


def tokenization_memo(tokenizer) -> dict:
    """The tokenization memo of one tokenizer, kept across decoding calls: a corpus repeats its
    words, phones and score contexts, so later batches mostly hit it. Emptied when it outgrows
    ``MEMO_LIMIT``; dropped with the tokenizer."""
    memo = _tokenizer_state(tokenizer).setdefault("memo", {})
    if len(memo) > MEMO_LIMIT:
        memo.clear()
    return memo


def clear_tokenization_memos() -> None:
    """Forget every tokenizer's memo (benchmarks time each run from cold)."""
    for state in _STATE.values():
        state.pop("memo", None)


@dataclass
class SlotCandidates:
    """What one slot needs: the tokens every choice shares beyond what is committed (``feed``) and,
    per choice, the tokens that tell it apart, boundary token included (``seqs``)."""

    feed: list[int]
    seqs: list[list[int]]
    committed_after: list[int]  # committed ids once ``feed`` is in the cache
    starts_after: list[int] = field(default_factory=list)  # their character starts in the answer


def _tokenize_choice_texts(tokenizer, committed: Sequence[int], committed_starts: Sequence[int] | None,
                           texts_from: Callable[[int], list[str]], window: int, memo: dict | None):
    """Ids and character offsets of every choice's whole answer text, re-tokenizing only from
    ``window`` committed tokens back when ``committed_starts`` allows (the answer grows with every
    slot; tokenizing all of it each time is quadratic). The window is used only if it reproduces
    the committed tokens exactly; otherwise its start was not a clean token boundary and the whole
    text is tokenized. ``texts_from(c0)`` gives the choices' texts from character ``c0``."""
    n = len(committed)
    k0 = n - window if (committed_starts is not None and n > window) else 0
    while True:
        c0 = committed_starts[k0] if k0 else 0
        ids, offsets = _tokenize(tokenizer, texts_from(c0), memo)
        if k0 == 0 or all(i[: n - k0] == list(committed[k0:]) for i in ids):
            break
        k0 = 0
    if k0:
        ids = [list(committed[:k0]) + i for i in ids]
        offsets = [[(0, 0)] * k0 + [(a + c0, b + c0) for a, b in o] for o in offsets]
    return ids, offsets, k0


def _shared_prefix_end(ids: list[list[int]], offsets: list, start: int, value_start: int) -> int:
    """Index after the tokens every choice shares from ``start`` on. A shared token is forced (fed
    before the slot) only if it lies wholly before the value: a token reaching into the value is
    part of what the choices decide, even when all of them happen to start with it."""
    common = start
    while all(len(i) > common for i in ids) and len({i[common] for i in ids}) == 1:
        if any(o[common][1] > value_start for o in offsets):
            break
        common += 1
    return common


def _distinguishing_seqs(values: list[str], ids: list[list[int]], offsets: list, common: int,
                         text_before: str, text_after: str) -> list[list[int]]:
    """Per choice, its tokens from ``common`` up to and including the boundary token (the first
    that reaches past the value). Refuses sequences that are not prefix-free: only prefix-free
    sequences are disjoint events, whose probabilities may be renormalised into a distribution."""
    seqs = []
    for v, i, o in zip(values, ids, offsets):
        end = len(text_before) + len(v)
        k = common
        while k < len(i) and o[k][1] <= end:
            k += 1
        if k >= len(i):
            raise ValueError(f"no boundary token after the value {v!r} (before {text_after[:20]!r})")
        seqs.append(i[common : k + 1])
    for a in range(len(seqs)):
        for b in range(len(seqs)):
            if a != b and seqs[b][: len(seqs[a])] == seqs[a]:
                raise ValueError(f"choice token sequences are not prefix-free at {text_before[-30:]!r}")
    return seqs


def slot_candidates(
    tokenizer,
    committed: Sequence[int],
    text_before: str,
    choices: Sequence[int],
    text_after: str,
    terminator_id: int | None,
    committed_starts: Sequence[int] | None = None,
    window: int = 3,
    memo: dict | None = None,
) -> SlotCandidates:
    """Token sequences of each choice of a slot, from whole-text tokenization (see module doc).

    ``committed`` are the answer's token ids already in the KV cache; ``text_before`` is the answer
    text up to the slot; ``text_after`` the literal after it ("" when the slot ends the answer, then
    ``terminator_id`` is the boundary).

    Speed: with ``committed_starts`` (the character start of each committed token) only the text from
    ``window`` committed tokens back is re-tokenized; the result is used only if it reproduces those
    committed tokens exactly, else the whole text is tokenized (and ``constrained_decode`` checks the
    final answer's full tokenization against everything it fed the model)."""
    values = [format_score(c) for c in choices]
    n = len(committed)
    ids, offsets, k0 = _tokenize_choice_texts(
        tokenizer, committed, committed_starts, lambda c0: [text_before[c0:] + v + text_after for v in values],
        window, memo)
    if text_after == "":
        if terminator_id is None:
            raise ValueError("a slot ends the answer but the backbone has no answer terminator token")
        for v, i, o in zip(values, ids, offsets):
            end = len(text_before) + len(v)
            i.append(int(terminator_id))
            o.append((end, end + 1))
    for i in ids:
        if i[:n] != list(committed):
            raise ValueError(
                "tokenizer merges text across a score boundary in a way that changes tokens already "
                f"decoded (before {text_before[-30:]!r}); template-constrained decoding cannot force this template"
            )
    common = _shared_prefix_end(ids, offsets, n, len(text_before))
    seqs = _distinguishing_seqs(values, ids, offsets, common, text_before, text_after)
    starts = list(committed_starts[:k0]) if k0 else []
    starts += [o[0] for o in offsets[0][len(starts) : common]]
    return SlotCandidates(feed=ids[0][n:common], seqs=seqs, committed_after=ids[0][:common], starts_after=starts)


def candidate_tree(seqs: Sequence[Sequence[int]]) -> tuple[list[tuple[int, int, int]], list[list[int]]]:
    """The trie of every choice's tokens except its last: nodes ``(token, parent, depth)`` (parent
    -1 for the root's children, depth from 1), and for each choice the node whose logits predict each
    of its tokens after the first (the first is predicted by the context's last position)."""
    nodes: list[tuple[int, int, int]] = []
    index: dict[tuple[int, ...], int] = {}
    predictors = []
    for seq in seqs:
        pred = []
        for j in range(1, len(seq)):
            prefix = tuple(seq[:j])
            if prefix not in index:
                parent = index[prefix[:-1]] if j > 1 else -1
                index[prefix] = len(nodes)
                nodes.append((prefix[-1], parent, j))
            pred.append(index[prefix])
        predictors.append(pred)
    return nodes, predictors


def tree_plan(seqs: Sequence[Sequence[int]], cache: dict | None = None) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    """``candidate_tree`` plus what a forward needs of it, as arrays: node tokens, node depths and
    the (nodes x nodes) "may attend" matrix (each node sees itself and its ancestors). Slots with the
    same candidate sequences (most of them: the same choices before the same boundary) share one
    plan through ``cache``."""
    key = tuple(map(tuple, seqs))
    hit = cache.get(key) if cache is not None else None
    if hit is None:
        nodes, predictors = candidate_tree(seqs)
        n = len(nodes)
        sees = np.eye(n, dtype=bool)
        for i, (_, parent, _) in enumerate(nodes):
            a = parent
            while a != -1:
                sees[i, a] = True
                a = nodes[a][1]
        hit = (nodes, predictors, np.array([t for t, _, _ in nodes], dtype=np.int64),
               np.array([d for _, _, d in nodes], dtype=np.int64), sees)
        if cache is not None:
            cache[key] = hit
    return hit


# --------------------------------------------------------------------------- counting passes


@contextmanager
def count_forwards(model):
    """Count forward passes of ``model`` (prefill and decode steps alike): ``with count_forwards(m) as c: ...; c[0]``."""
    counter = [0]

    def hook(*_):
        counter[0] += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


# --------------------------------------------------------------------------- decoding


@dataclass
class _Row:
    segments: list[tuple[str, Slot]]
    trailing: str
    k: int = 0
    text: str = ""
    committed: list[int] = field(default_factory=list)
    committed_starts: list[int] = field(default_factory=list)
    result: DecodeResult = field(default_factory=lambda: DecodeResult(text=""))
    last_value: int | None = None  # the row's last chosen value (look-ahead guesses)
    last_by_aspect: dict = field(default_factory=dict)  # (level, aspect) -> last chosen value

    @property
    def done(self) -> bool:
        return self.k >= len(self.segments)


def _cache_drop_last(cache, n: int) -> None:
    """Remove the last ``n`` positions (the candidate tree) from every layer of the cache."""
    if n <= 0:
        return
    try:
        cache.crop(-n)
    except Exception as e:  # sliding-window layers and other caches that cannot crop
        raise ValueError(f"constrained decoding needs a croppable KV cache; {type(cache).__name__} refused: {e}") from e


@dataclass
class _Stage:
    """One slot planned into a forward: its candidates, their tree, and where both sit in the chunk."""

    slot: Slot
    cand: SlotCandidates
    nodes: list
    predictors: list
    node_tokens: np.ndarray
    node_depths: np.ndarray
    sees: np.ndarray
    guess: int | None = None  # the value assumed for this slot by the NEXT stage (None: last stage)
    feed_at: int = 0  # chunk column of its first feed token
    tree_at: int = 0  # chunk column of its first tree node


def _guess(row: "_Row", slot: Slot) -> int:
    """The value a look-ahead stage assumes for ``slot``: this row's last choice for the same level
    and aspect, else its last choice of any slot, else the top of the scale. Scores run in streaks
    (most phones of a good reading are 10), so the guess is usually right; a wrong guess costs only
    the speculative stages, never correctness."""
    value = row.last_by_aspect.get(slot.key[:2], row.last_value)
    return value if value in slot.choices else slot.choices[-1]


def _plan_row(tokenizer, r: "_Row", terminator_id, memo, trees, lookahead: int) -> list[_Stage]:
    """Stage 0 is the row's next slot in its true context; stage j >= 1 is the slot after, in the
    context where every earlier stage took its ``guess``. A speculative stage that cannot be planned
    (no feed token to predict from, or a tokenization the decoder refuses) ends the look-ahead there:
    it will be planned again, as stage 0, in the true context."""
    stages: list[_Stage] = []
    committed, starts, text = r.committed, r.committed_starts, r.text
    for j in range(lookahead + 1):
        k = r.k + j
        if k >= len(r.segments):
            break
        literal, slot = r.segments[k]
        after = r.segments[k + 1][0] if k + 1 < len(r.segments) else r.trailing
        try:
            cand = slot_candidates(tokenizer, committed, text + literal, slot.choices, after, terminator_id,
                                   committed_starts=starts, memo=memo)
        except ValueError:
            if j == 0:
                raise
            break
        if j and not cand.feed:
            break
        if stages:
            stages[-1].guess = guess
        stages.append(_Stage(slot, cand, *tree_plan(cand.seqs, trees)))
        guess = _guess(r, slot)
        text = text + literal + format_score(guess)
        committed, starts = cand.committed_after, cand.starts_after
    return stages


@dataclass
class _BatchState:
    """What a batch carries from one forward to the next."""

    cache: Any  # the KV cache: prompt + every committed answer token, per row
    last_lp: torch.Tensor  # (rows, vocab) log-probabilities after each row's last committed token
    attn2d: np.ndarray  # (rows, cache length): which cache positions are real (grows with each chunk)
    next_pos: np.ndarray  # (rows,): the position id of each row's next token
    dtype: torch.dtype
    device: torch.device

    @property
    def neg(self) -> float:
        """The additive mask value for "may not attend" in the model's dtype."""
        return torch.finfo(self.dtype if self.dtype.is_floating_point else torch.float32).min


def _prefill(model, prefill: dict) -> _BatchState:
    """One forward over the prompts (audio included). Position ids count real tokens only, so a
    left-padded row gets the positions it would get alone (batch invariance); only the last position's
    logits are computed, since that is all the prefill gives the decoder (left padding: the last column
    is real in every row)."""
    prefill = dict(prefill)
    attn_t = prefill["attention_mask"].bool()
    position_ids = (attn_t.long().cumsum(-1) - 1).masked_fill(~attn_t, 0)
    with logits_only_at(model, slice(-1, None)):
        out = model(**prefill, position_ids=position_ids, use_cache=True)
    attn2d = attn_t.cpu().numpy()
    return _BatchState(cache=output_cache(out), last_lp=torch.log_softmax(out.logits[:, -1].float(), dim=-1),
                       attn2d=attn2d, next_pos=attn2d.sum(-1).astype(np.int64), dtype=out.logits.dtype,
                       device=attn_t.device)


def _layout_chunk(plans: list) -> tuple[int, int]:
    """Give every stage its chunk columns (``feed_at``, ``tree_at``); returns ``(F, R)``.

    Each row's chunk is ``[stage-0 feed (padded to F) | stage-0 tree | stage-1 feed | stage-1 tree |
    ...]``. The stage-0 feeds come first and are padded to one width because they are certain and
    stay in the KV cache; everything after them (R columns: trees and speculative feeds) is cropped
    off once the forward has been read."""
    feed_width = max((len(p[0].cand.feed) for p in plans if p), default=0)
    rest = 0
    for p in plans:
        if p is None:
            continue
        col = feed_width
        for j, st in enumerate(p):
            if j:
                st.feed_at = col
                col += len(st.cand.feed)
            st.tree_at = col
            col += len(st.nodes)
        rest = max(rest, col - feed_width)
    return feed_width, rest


def _place(ids, pos, allowed, b: int, cols: np.ndarray, tokens, positions, own: np.ndarray,
           context: np.ndarray, path: list[int]) -> None:
    """Write one block of chunk columns (a stage's feed or its tree) into the forward's inputs: its
    tokens and positions, and what each may attend to: the cache's real positions, the (guessed)
    path of feeds before it in this chunk, and its own block as ``own`` allows."""
    past = context.shape[0]
    ids[b, cols] = tokens
    pos[b, cols] = positions
    allowed[b, cols, :past] = context
    if path:
        allowed[b, cols[:, None], past + np.array(path)[None, :]] = True
    allowed[b, cols, past + cols[0] : past + cols[0] + len(cols)] = own


def _chunk_inputs(plans: list, feed_width: int, width: int, state: _BatchState, pad_id: int):
    """Token ids, position ids and the "may attend" matrix ``(rows, width, past + width)`` of one
    chunk, plus which of the first ``feed_width`` columns are real per row (those stay in the
    cache). Feeds attend causally, tree nodes see their ancestors only (``tree_plan``), and padding
    queries see only themselves (a row of -inf would give NaN)."""
    rows, past = len(plans), state.attn2d.shape[1]
    ids = np.full((rows, width), pad_id, dtype=np.int64)
    pos = np.zeros((rows, width), dtype=np.int64)
    allowed = np.zeros((rows, width, past + width), dtype=bool)
    allowed[:, np.arange(width), past + np.arange(width)] = True
    feed_real = np.zeros((rows, feed_width), dtype=bool)
    causal = np.tril(np.ones((width, width), dtype=bool))
    for b, p in enumerate(plans):
        if p is None:
            continue
        path: list[int] = []  # chunk columns of the (guessed) path so far: every earlier stage's feed
        at = int(state.next_pos[b])
        for j, st in enumerate(p):
            f = len(st.cand.feed)
            if f:
                cols = np.arange(st.feed_at, st.feed_at + f)
                _place(ids, pos, allowed, b, cols, st.cand.feed, at + np.arange(f), causal[:f, :f], state.attn2d[b], path)
                path += cols.tolist()
                if j == 0:
                    feed_real[b, :f] = True
            if st.nodes:
                cols = np.arange(st.tree_at, st.tree_at + len(st.nodes))
                _place(ids, pos, allowed, b, cols, st.node_tokens, at + f + st.node_depths - 1, st.sees,
                       state.attn2d[b], path)
            at += f
    return ids, pos, allowed, feed_real


@dataclass
class _Readout:
    """The chunk positions whose logits are read, in order (``rows``, ``queries``), and where each
    stage's reads start in that order: ``first_src[b, j]`` is the read of the position that predicts
    the stage's first candidate token (None: it is predicted by the row's last committed token,
    ``_BatchState.last_lp``), ``node_base[b, j]`` the read of its first tree node."""

    rows: list[int] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    first_src: dict = field(default_factory=dict)
    node_base: dict = field(default_factory=dict)


def _readout(plans: list) -> _Readout:
    """The positions read: each stage's last feed token and its tree nodes."""
    out = _Readout()
    for b, p in enumerate(plans):
        for j, st in enumerate(p or ()):
            f = len(st.cand.feed)
            out.first_src[b, j] = len(out.rows) if f else None
            if f:
                out.rows.append(b)
                out.queries.append(st.feed_at + f - 1)
            out.node_base[b, j] = len(out.rows)
            out.rows += [b] * len(st.nodes)
            out.queries += list(range(st.tree_at, st.tree_at + len(st.nodes)))
    return out


def _forward_chunk(model, state: _BatchState, ids, pos, allowed, readout: _Readout) -> torch.Tensor | None:
    """Run one chunk on top of the cache (tree attention through a 4D additive mask) and return the
    log-softmax at every read position (one row per ``readout`` entry). The LM head runs only at the
    columns read: the rest of the vocabulary projection would be thrown away."""
    rows, width = ids.shape
    past = state.attn2d.shape[1]
    mask = torch.zeros((rows, 1, width, past + width), dtype=state.dtype, device=state.device)
    mask.masked_fill_(~torch.from_numpy(allowed).to(state.device)[:, None], state.neg)
    columns = sorted(set(readout.queries)) or [width - 1]
    column = {q: j for j, q in enumerate(columns)}
    with logits_only_at(model, columns):
        out = model(input_ids=torch.from_numpy(ids).to(state.device), attention_mask=mask,
                    position_ids=torch.from_numpy(pos).to(state.device), use_cache=True, **cache_kwargs(model, state.cache))
    state.cache = output_cache(out)
    if not readout.rows:
        return None
    return torch.log_softmax(out.logits[readout.rows, [column[q] for q in readout.queries]].float(), dim=-1)


def _gather(table: torch.Tensor, rows: list[int], toks: list[int], into: list[float], at: list[int]) -> None:
    """``into[at[i]] = table[rows[i], toks[i]]`` with one indexing op (not one tiny op per token)."""
    if at:
        for i, x in zip(at, table[rows, toks].double().tolist()):
            into[i] = x


def _candidate_scores(plans: list, readout: _Readout, sel: torch.Tensor | None, last_lp: torch.Tensor) -> list:
    """Each candidate's log-probability, per row and stage (``scores[b][j][c]``): its first token's
    log-probability where the stage's context ends, plus each later token's at the tree node that
    predicts it. All reads of the chunk are gathered with three indexing ops."""
    first_rows, first_toks, node_rows, node_toks = [], [], [], []
    for b, p in enumerate(plans):
        for j, st in enumerate(p or ()):
            src = readout.first_src[b, j]
            for seq, pred in zip(st.cand.seqs, st.predictors):
                first_rows.append(-1 - b if src is None else src)
                first_toks.append(seq[0])
                for tok, node in zip(seq[1:], pred):
                    node_rows.append(readout.node_base[b, j] + node)
                    node_toks.append(tok)
    first_vals = [0.0] * len(first_rows)
    from_last = [i for i, r in enumerate(first_rows) if r < 0]
    from_sel = [i for i, r in enumerate(first_rows) if r >= 0]
    _gather(last_lp, [-1 - first_rows[i] for i in from_last], [first_toks[i] for i in from_last], first_vals, from_last)
    _gather(sel, [first_rows[i] for i in from_sel], [first_toks[i] for i in from_sel], first_vals, from_sel)
    node_vals = sel[node_rows, node_toks].double().tolist() if node_rows else []
    scores, fi, ni = [], 0, 0
    for p in plans:
        row_scores = []
        for st in p or ():
            stage_scores = []
            for seq in st.cand.seqs:
                s = first_vals[fi]
                fi += 1
                for _ in seq[1:]:
                    s += node_vals[ni]
                    ni += 1
                stage_scores.append(s)
            row_scores.append(stage_scores)
        scores.append(row_scores)
    return scores


def _commit_slot(r: _Row, scores: Sequence[float]) -> int:
    """Take the row's next slot from its candidates' log-probabilities: the renormalised
    distribution, its argmax (the value written into the answer) and its expectation."""
    top = max(scores)
    weights = [math.exp(x - top) for x in scores]
    total = sum(weights)
    probs = [w / total for w in weights]
    literal, slot = r.segments[r.k]
    best = max(range(len(probs)), key=lambda i: probs[i])
    value = int(slot.choices[best])
    r.result.values[slot.key] = value
    r.result.expected[slot.key] = float(sum(p * c for p, c in zip(probs, slot.choices)))
    r.result.probs[slot.key] = probs
    r.text = r.text + literal + format_score(value)
    r.last_value = value
    r.last_by_aspect[slot.key[:2]] = value
    r.k += 1
    return value


def _accept(r: _Row, stages: list[_Stage], scores: list) -> None:
    """Commit stage 0 and every following stage whose guessed context came true (the previous
    stage's argmax equals its guess); the rest was computed in a context that did not happen and is
    dropped. Only stage 0's feed stays in the cache: that is what the row has committed."""
    for st, stage_scores in zip(stages, scores):
        value = _commit_slot(r, stage_scores)
        if st.guess is None or st.guess != value:
            break
    r.committed = stages[0].cand.committed_after
    r.committed_starts = stages[0].cand.starts_after


def _decode_step(model, rows: list[_Row], plans: list, state: _BatchState, pad_id: int) -> None:
    """One forward for the whole batch: lay out the planned stages, run them, commit what holds,
    and crop the trees and speculative feeds off the cache."""
    feed_width, rest = _layout_chunk(plans)
    ids, pos, allowed, feed_real = _chunk_inputs(plans, feed_width, feed_width + rest, state, pad_id)
    readout = _readout(plans)
    sel = _forward_chunk(model, state, ids, pos, allowed, readout)
    scores = _candidate_scores(plans, readout, sel, state.last_lp)
    for b, p in enumerate(plans):
        if p is None:
            continue
        _accept(rows[b], p, scores[b])
        if p[0].cand.feed:
            state.last_lp[b] = sel[readout.first_src[b, 0]]
    _cache_drop_last(state.cache, rest)
    state.attn2d = np.concatenate([state.attn2d, feed_real], axis=1)
    state.next_pos = state.next_pos + feed_real.sum(-1)


def _finish(rows: list[_Row], tokenizer) -> list[DecodeResult]:
    """Each row's answer text and token ids, checked: the tokens fed to the model must be the
    answer's own tokenization (what training showed the model), else the probabilities were read in
    a context the model never sees."""
    for r in rows:
        r.result.text = r.text + r.trailing
        r.result.token_ids = tokenizer(r.result.text, add_special_tokens=False)["input_ids"]
        if r.result.token_ids[: len(r.committed)] != r.committed:
            raise ValueError(f"constrained decoding fed tokens that differ from the tokenization of {r.result.text[:40]!r}...")
    return [r.result for r in rows]


@torch.no_grad()
def constrained_decode(
    model,
    tokenizer,
    prefill: dict,
    templates: Sequence[Template],
    terminator_id: int | None,
    pad_id: int = 0,
    lookahead: int = 0,
) -> list[DecodeResult]:
    """Decode a batch of templates (one per row of ``prefill``, a left-padded ``build_batch``
    output). Returns one ``DecodeResult`` per row, with exact per-slot distributions.

    ``lookahead`` > 0 (speculative slots): each forward also carries the next ``lookahead`` slots of
    every row, planned as if each earlier slot took a guessed value (``_guess``). Where the argmax
    equals the guess, the next slot's distribution was computed in its true context and is taken as
    is; at the first wrong guess the rest is dropped and planned again. Results are identical to
    ``lookahead=0`` (tested); only the number of forwards changes: fewer when guesses hold, at the
    price of longer chunks (worth it where a forward costs the same for 10 or 60 query tokens: a GPU,
    or a CPU at batch 1)."""
    if lookahead < 0:
        raise ValueError(f"lookahead must be >= 0, got {lookahead}")
    rows = [_Row(*template_segments(t)) for t in templates]
    state = _prefill(model, prefill)
    memo = tokenization_memo(tokenizer)
    trees: dict = {}
    while not all(r.done for r in rows):
        plans = [None if r.done else _plan_row(tokenizer, r, terminator_id, memo, trees, lookahead) for r in rows]
        _decode_step(model, rows, plans, state, pad_id)
    return _finish(rows, tokenizer)


def answer_terminator_id(backbone) -> int | None:
    """The token the training target puts right after the answer: ``build_batch`` tokenizes
    ``answer + backbone.end_of_turn``, a special token, so it is that token's id. Falls back to the
    tokenizer's EOS for a backbone without an end-of-turn token."""
    tok = backbone.tokenizer
    if getattr(backbone, "end_of_turn", ""):
        ids = tok(backbone.end_of_turn, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
    return int(tok.eos_token_id) if tok.eos_token_id is not None else None
