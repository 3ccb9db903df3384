"""Helpers for the prompts / preference / evaluate tests: random SYNTHETIC utterances (made-up
labels, never human scores) in the schema's shape."""

from __future__ import annotations

import random

from lmm_apa.data.schema import Audio, Mispronunciation, SentenceScores, Utterance, Word

VOCAB = ["WE", "CALL", "IT", "BEAR", "THE", "CAT", "SAT", "ON", "MAT", "I", "LIKE", "BLUE", "FISH",
         "DON'T", "STOP", "NOW", "HELLO", "WORLD", "GOOD", "DAY", "RED", "APPLE", "RUNS", "FAST"]
PHONES = ["W", "IY0", "K", "AO1", "L", "IH0", "T", "B", "EH1", "R", "DH", "AH0", "AE1", "S", "M", "N", "AY1", "F", "SH", "D"]


def make_utt(rng: random.Random, uid: str = "u0", n_words: int | None = None, phones: bool = True,
             labelled: bool = True, unique_phones: bool = False) -> Utterance:
    """Distinct words, each with a distinct canonical phone sequence (so a reordering stays
    identifiable); with ``unique_phones`` no phone occurs twice in the utterance (so even a phone
    that lost its word boundary is identifiable). Scores drawn over the whole scale, phone scores
    on SO762's 0-2 grid."""
    n = n_words if n_words is not None else rng.randint(1, 6 if unique_phones else 8)
    texts = rng.sample(VOCAB, n)
    seen: set[tuple[str, ...]] = set()
    pool = rng.sample(PHONES, len(PHONES))
    words = []
    for text in texts:
        while True:
            if unique_phones:
                ph = tuple(pool.pop() for _ in range(rng.randint(1, 3)))
            else:
                ph = tuple(rng.choice(PHONES) for _ in range(rng.randint(1, 4)))
            if ph not in seen:
                seen.add(ph)
                break
        w = Word(text=text, phones=list(ph) if phones else [])
        if labelled:
            w.accuracy = rng.randint(0, 10)
            w.stress = rng.choice([5, 10])
            w.total = rng.randint(0, 10)
            if phones:
                w.phone_scores = [rng.randint(0, 10) / 5 for _ in ph]
                k = rng.randrange(len(ph))
                if rng.random() < 0.5:
                    w.mispronunciations = [Mispronunciation(ph[k], k, rng.choice(["<DEL>", "AH0", "<unk>", "S"]))]
        words.append(w)
    sentence = None
    if labelled:
        sentence = SentenceScores(*(float(rng.randint(0, 10)) for _ in range(5)))
    return Utterance(id=uid, text=" ".join(texts), words=words, audio=Audio(path=f"{uid}.wav"),
                     sentence=sentence, synthetic=True)
