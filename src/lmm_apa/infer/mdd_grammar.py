"""Grammar-constrained decoding of the MDD answer (Ahn & Nam 2025): every output parses.

Why: an MDD answer has no score slots, so the template decoder of ``constrained`` does not apply;
left free, a model (untrained or zero-shot above all) writes prose, key names or half an object,
and those answers are lost to the evaluation. Here the answer's grammar (``prompts.mdd_answer``)
is enforced token by token:

- the skeleton ``{'word_transcript': '`` ... ``', 'phoneme_transcript': '`` ... ``'}`` is forced;
- the word transcript is made of letters, apostrophes, spaces and ``<unk>``; an apostrophe
  followed by ``,`` closes it (``That's`` stays a word);
- the phone transcript is made of the inventory's phones (``data.phones.output_phones``: CMUdict
  phones without stress, ``<unk>``, starred phones with ``keep_star``) separated by single spaces;
- after the closing brace only an end-of-turn token may follow.

How: a small character automaton (``MddGrammar``) says which characters may come next in each
state. For each vocabulary token its decoded string is known (``GrammarVocab``; byte-level BPE
tokenizers, as both backbones use, decode token by token exactly); a token is allowed in a state
iff the automaton accepts all of its characters. The allowed tokens of a state are computed once
per tokenizer and kept as vocabulary-sized masks in a bank on the model's device, so a decoding
step is one gather and one masked fill (``benchmarks/bench_mdd_grammar.py``). The masks go into transformers'
``generate`` as a ``LogitsProcessor`` (greedy, KV cache, left-padded batch: the same path as free
generation).

The token budget is part of the grammar: a token is allowed only if, after it, the shortest way to
finish the answer (forced tokens, greedy longest match) and the end-of-turn token still fit in
``max_new_tokens``. So the answer is always closed, however small the budget (down to the length
of the empty answer, below which the decoder refuses with a clear error).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from lmm_apa.data.phones import STAR, UNK, output_phones
from lmm_apa.infer.generate import Decoded, model_device, to_device
from lmm_apa.models.logits import logits_only_at
from lmm_apa.prompts.mdd_answer import CLOSING, MIDDLE, OPENING

LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
State = tuple  # ("open", k) ("w0",) ("w",) ("a",) ("unkw", k) ("uend",) ("aend",) ("mid", k) ("ps0",)
#                ("ps",) ("pin", prefix) ("unkp", k) ("pend",) ("close", k) ("final",)
START: State = ("open", 0)
FINAL: State = ("final",)


# --------------------------------------------------------------------------- the character automaton


class MddGrammar:
    """The MDD answer as a deterministic character automaton. ``step(state, ch)`` is the next
    state or None; ``completion(state)`` the shortest text that finishes the answer from there."""

    def __init__(self, keep_star: bool = False):
        self.keep_star = keep_star
        self.phones = tuple(p for p in output_phones(keep_star) if p != UNK and not p.endswith(STAR))
        self.prefixes = {p[:k] for p in self.phones for k in range(1, len(p) + 1)}
        self._shortest = {pre: min((p for p in self.phones if p.startswith(pre)), key=len) for pre in self.prefixes}

    # literals: (text, what follows it)
    def _literal(self, kind: str) -> tuple[str, State]:
        return {"open": (OPENING, ("w0",)), "unkw": (UNK, ("uend",)), "mid": (MIDDLE, ("ps0",)),
                "unkp": (UNK, ("pend",)), "close": (CLOSING, FINAL)}[kind]

    def step(self, state: State, ch: str) -> State | None:
        kind = state[0]
        if kind in ("open", "unkw", "mid", "unkp", "close"):
            text, after = self._literal(kind)
            k = state[1]
            if ch != text[k]:
                return None
            return after if k + 1 == len(text) else (kind, k + 1)
        if kind in ("w0", "w", "a", "uend", "aend"):
            return self._word_step(kind, ch)
        if kind in ("ps0", "ps"):
            if ch in self.prefixes:
                return ("pin", ch)
            if ch == "<":
                return ("unkp", 1)
            if ch == "'" and kind == "ps0":  # an empty phone transcript
                return ("close", 1)
            return None
        if kind == "pin":
            prefix = state[1]
            if prefix + ch in self.prefixes:
                return ("pin", prefix + ch)
            if prefix not in self.phones:
                return None
            if ch == STAR and self.keep_star:
                return ("pend",)
            return self.step(("pend",), ch)
        if kind == "pend":
            return ("ps",) if ch == " " else ("close", 1) if ch == "'" else None
        return None  # final

    @staticmethod
    def _word_step(kind: str, ch: str) -> State | None:
        """Inside the word transcript: ``w0`` at a word's start, ``w`` inside a word, ``a`` after an
        apostrophe (``,`` then closes the transcript), ``uend`` after ``<unk>`` (a space or the
        closing quote must follow), ``aend`` after the quote closing a transcript ending in ``<unk>``."""
        if kind == "aend":
            return ("mid", 2) if ch == "," else None
        if ch == " ":
            return ("w0",)
        if kind == "uend":
            return ("aend",) if ch == "'" else None
        if ch in LETTERS:
            return ("w",)
        if ch == "'":
            return ("a",)
        if ch == "<" and kind == "w0":
            return ("unkw", 1)
        if ch == "," and kind == "a":  # the apostrophe closed the word transcript
            return ("mid", 2)
        return None

    def accepts(self, state: State, text: str) -> State | None:
        for ch in text:
            state = self.step(state, ch)
            if state is None:
                return None
        return state

    def completion(self, state: State) -> str:
        kind = state[0]
        if kind in ("open", "unkw", "mid", "unkp", "close"):
            text, after = self._literal(kind)
            return text[state[1]:] + self.completion(after)
        if kind in ("w0", "w", "uend"):
            return MIDDLE + CLOSING
        if kind in ("a", "aend"):
            return MIDDLE[1:] + CLOSING
        if kind in ("ps0", "pend"):
            return CLOSING
        if kind == "ps":
            return min(self.phones, key=len) + CLOSING
        if kind == "pin":
            return self._shortest[state[1]][len(state[1]):] + CLOSING
        return ""


# --------------------------------------------------------------------------- the vocabulary


@dataclass
class Allowed:
    """The tokens allowed in one state, the state each leads to, and the forced-completion cost
    (tokens) from there; ``forbidden`` is the vocabulary-sized mask of everything else (the mask
    of a step whose budget is not tight)."""

    ids: np.ndarray
    next_states: list
    next_costs: np.ndarray
    next_of: dict = field(default_factory=dict)
    forbidden: torch.Tensor | None = None

    @property
    def max_cost(self) -> int:
        return int(self.next_costs.max()) if len(self.next_costs) else 0


class GrammarVocab:
    """One tokenizer's view of the grammar: every token's decoded string, the allowed tokens per
    state (cached), and the forced completion of each state."""

    def __init__(self, tokenizer, keep_star: bool = False):
        self.grammar = MddGrammar(keep_star)
        self.size = len(tokenizer)
        self.strings = tokenizer.batch_decode([[i] for i in range(self.size)], skip_special_tokens=False,
                                              clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self._check_concatenates(tokenizer)
        alphabet = LETTERS | set(OPENING + MIDDLE + CLOSING + UNK + " *")
        self.by_first: dict[str, list[int]] = {}
        self.by_string: dict[str, int] = {}
        for i, s in enumerate(self.strings):
            if i in special or not s or not set(s) <= alphabet:
                continue
            self.by_first.setdefault(s[0], []).append(i)
            self.by_string.setdefault(s, i)
        self.max_len = max(len(s) for s in self.by_string)
        self._allowed: dict[State, Allowed] = {}
        self._forced: dict[State, list[int]] = {}
        self._bank_index: dict = {}
        self._bank_masks: list[torch.Tensor] = []
        self._banks: dict[str, torch.Tensor] = {}

    def _check_concatenates(self, tokenizer) -> None:
        """Token strings must concatenate to the text they encode (byte-level BPE does; a
        SentencePiece tokenizer that drops a leading space would not): refuse loudly otherwise."""
        probe = OPENING + "That's <unk> it" + MIDDLE + "DH AE T S <unk> IH T" + CLOSING
        ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
        joined = "".join(self.strings[i] for i in ids)
        if joined != probe:
            raise ValueError(f"{type(tokenizer).__name__}: token strings do not concatenate to the text they encode "
                             f"({joined!r} != {probe!r}); grammar-constrained MDD decoding needs a byte-level BPE tokenizer")

    def forced(self, state: State) -> list[int]:
        """The shortest way to finish from ``state``: the completion text in greedy longest-match
        tokens (every prefix of a completion is accepted by the grammar, so each is allowed)."""
        if state not in self._forced:
            text, ids = self.grammar.completion(state), []
            while text:
                for n in range(min(len(text), self.max_len), 0, -1):
                    if text[:n] in self.by_string:
                        ids.append(self.by_string[text[:n]])
                        text = text[n:]
                        break
                else:
                    raise ValueError(f"no token spells {text[0]!r}: the tokenizer cannot write every MDD answer")
            self._forced[state] = ids
        return self._forced[state]

    def cost(self, state: State) -> int:
        return len(self.forced(state))

    def bank_rows(self, keys: Sequence[State], eos_ids: Sequence[int], device) -> torch.Tensor:
        """The masks of ``keys`` (states; ``FINAL``: only ``eos_ids``), gathered from a bank kept on
        ``device``: each state's mask is uploaded once, so a decoding step is one gather."""
        new = [k for k in dict.fromkeys(keys) if (k, tuple(eos_ids)) not in self._bank_index]
        for k in new:
            if k == FINAL:
                m = torch.ones(self.size, dtype=torch.bool)
                m[list(eos_ids)] = False
            else:
                m = self.allowed(k).forbidden
            self._bank_index[(k, tuple(eos_ids))] = len(self._bank_masks)
            self._bank_masks.append(m)
        key = str(device)
        bank = self._banks.get(key)
        if bank is None or bank.shape[0] < len(self._bank_masks):
            fresh = torch.stack(self._bank_masks[0 if bank is None else bank.shape[0]:]).to(device)
            bank = fresh if bank is None else torch.cat([bank, fresh])
            self._banks[key] = bank
        return bank[torch.as_tensor([self._bank_index[(k, tuple(eos_ids))] for k in keys], device=device)]

    def allowed(self, state: State) -> Allowed:
        if state not in self._allowed:
            ids, nexts = [], []
            for ch, candidates in self.by_first.items():
                if self.grammar.step(state, ch) is None:
                    continue
                for i in candidates:
                    nxt = self.grammar.accepts(state, self.strings[i])
                    if nxt is not None:
                        ids.append(i)
                        nexts.append(nxt)
            forbidden = torch.ones(self.size, dtype=torch.bool)
            forbidden[torch.as_tensor(ids, dtype=torch.long)] = False
            self._allowed[state] = Allowed(np.asarray(ids, dtype=np.int64), nexts,
                                           np.asarray([self.cost(s) for s in nexts], dtype=np.int64),
                                           dict(zip(ids, nexts)), forbidden)
        return self._allowed[state]


_VOCABS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def grammar_vocab(tokenizer, keep_star: bool = False) -> GrammarVocab:
    """The tokenizer's ``GrammarVocab``, built once and kept while the tokenizer lives."""
    try:
        per_tok = _VOCABS.setdefault(tokenizer, {})
    except TypeError:  # not weakly referenceable: build each time
        per_tok = {}
    if keep_star not in per_tok:
        per_tok[keep_star] = GrammarVocab(tokenizer, keep_star)
    return per_tok[keep_star]


# --------------------------------------------------------------------------- decoding


def min_new_tokens(tokenizer, keep_star: bool = False) -> int:
    """The smallest budget that can hold an answer: the empty answer plus the end-of-turn token."""
    return grammar_vocab(tokenizer, keep_star).cost(START) + 1


class MddGrammarProcessor:
    """A transformers ``LogitsProcessor``: masks every token the grammar (and the budget) forbids.
    Each row's automaton advances by the token generated last; a row that ended (end-of-turn) may
    only repeat an end token (``generate`` pads it anyway)."""

    def __init__(self, vocab: GrammarVocab, prompt_len: int, max_new_tokens: int, eos_ids: Sequence[int], rows: int):
        self.vocab, self.prompt_len, self.max_new = vocab, prompt_len, max_new_tokens
        self.eos = torch.as_tensor(list(eos_ids), dtype=torch.long)
        self.eos_list = list(eos_ids)
        self.states: list[State | None] = [START] * rows

    def _advance(self, row: int, token: int) -> None:
        state = self.states[row]
        if state is None:
            return
        if state == FINAL or token in self.eos_list:
            self.states[row] = None  # ended
            return
        nxt = self.vocab.allowed(state).next_of.get(token)
        if nxt is None:
            raise RuntimeError(f"row {row}: token {token} ({self.vocab.strings[token]!r}) is not allowed in state {state}")
        self.states[row] = nxt

    def _row_mask(self, state: State | None, remaining: int) -> torch.Tensor | State:
        """Vocabulary-sized, True where forbidden, when the budget is tight (only the tokens after
        which the forced completion and the end token still fit); otherwise the state itself,
        whose cached mask the bank holds."""
        if state is None or state == FINAL:
            return FINAL
        allowed = self.vocab.allowed(state)
        if allowed.max_cost + 1 <= remaining - 1:
            return state
        mask = torch.ones(self.vocab.size, dtype=torch.bool)
        mask[torch.from_numpy(allowed.ids[allowed.next_costs + 1 <= remaining - 1])] = False
        return mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        remaining = self.max_new - step
        rows = []
        for row, token in enumerate(input_ids[:, -1].tolist()):
            if step > 0:
                self._advance(row, token)
            rows.append(self._row_mask(self.states[row], remaining))
        keys = [r if not isinstance(r, torch.Tensor) else FINAL for r in rows]
        mask = self.vocab.bank_rows(keys, self.eos_list, scores.device)
        for row, r in enumerate(rows):
            if isinstance(r, torch.Tensor):  # a tight budget: this row's own mask
                mask[row] = r.to(scores.device)
        if scores.shape[1] > self.vocab.size:  # ids past the tokenizer (padded embeddings): forbidden
            pad = torch.ones(scores.shape[0], scores.shape[1] - self.vocab.size, dtype=torch.bool, device=scores.device)
            mask = torch.cat([mask, pad], dim=1)
        return scores.masked_fill(mask[:, : scores.shape[1]], float("-inf"))


@torch.no_grad()
def generate_mdd(backbone, audios: Sequence[np.ndarray], prompts: Sequence[str], max_new_tokens: int,
                 keep_star: bool = False) -> list[Decoded]:
    """Greedy grammar-constrained generation of MDD answers for a batch (``decoding="constrained"``)."""
    from transformers import LogitsProcessorList

    vocab = grammar_vocab(backbone.tokenizer, keep_star)
    need = vocab.cost(START) + 1
    if max_new_tokens < need:
        raise ValueError(f"max_new_tokens={max_new_tokens} cannot hold an MDD answer: this tokenizer needs at least {need}")
    model = backbone.model
    batch = to_device(backbone.build_batch(list(audios), list(prompts)), model_device(model))
    prompt_len = batch["input_ids"].shape[1]
    eos = backbone.eos_token_ids
    processor = MddGrammarProcessor(vocab, prompt_len, max_new_tokens, eos, len(prompts))
    with logits_only_at(model, slice(-1, None)):
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=eos,
            pad_token_id=backbone.pad_token_id, logits_processor=LogitsProcessorList([processor]),
        )
    decoded = []
    for row in out[:, prompt_len:].tolist():
        n = next((i for i, t in enumerate(row) if t in eos), len(row))
        text = "".join(vocab.strings[t] for t in row[:n])
        decoded.append(Decoded(output=text, decoding="constrained", new_tokens=min(n + 1, len(row))))
    return decoded


def decode_transcripts(backbone, task, prepared: Sequence, lookahead: int | None = None) -> list[Decoded]:
    """``predict``'s constrained decoder for transcript tasks (mdd): a batch of prepared rows
    (``.audio``, ``.prompt``, ``.fallback``) through ``generate_mdd``. The budget is free
    generation's for the same text (``max_new_tokens_for``), at least the empty answer's.
    ``lookahead`` (speculative score slots) has no meaning without score slots and is not used."""
    from lmm_apa.infer.generate import max_new_tokens_for

    keep_star = bool(getattr(task, "keep_star", False))
    budget = max(max_new_tokens_for(backbone.tokenizer, None, p.fallback) for p in prepared)
    budget = max(budget, min_new_tokens(backbone.tokenizer, keep_star))
    return generate_mdd(backbone, [p.audio for p in prepared], [p.prompt for p in prepared], budget, keep_star)
