"""A synthetic Speechocean762-like corpus whose every score is a known function of its audio.

Why it exists: no model weights and no labelled speech could be downloaded where this toolkit was
built and tested, yet the toolkit must *prove* that it learns. A corpus whose labels follow rules
written here lets a tiny, randomly initialised model learn them in CPU minutes, and lets a broken
pipeline (audio not reaching the model, labels shifted) fail visibly: the scores cannot be guessed
from the text. Every utterance is marked synthetic (``"synthetic": true`` in ``resource/scores.json`` and
``resource/SYNTHETIC.md``): these are never human labels.

Audio (16 kHz, mono, 16-bit)
----------------------------
- 40 reading texts per seed (``sentence_pool``), each read by many speakers as in SO762, so the
  text carries no score information (with one text per utterance, a tiny model memorised
  text -> score instead of listening); each is 3-7 words drawn from ``WORDS`` (canonical phones
  from CMUdict's first pronunciation; SO762 style: monosyllables' vowels carry stress 0).
- Every phone is a short sound (about 70-140 ms, times the utterance's speaking rate) with its own
  spectral signature: vowels and sonorants a harmonic complex at the pitch f0 shaped by 3 formants
  (vowels: Peterson & Barney-like values; diphthongs glide), fricatives band-passed noise, stops a
  closure then a burst, voiced obstruents add a low voice bar. All clean energy lies below ~5.5 kHz.
- Pitch: a speaker base f0 (men ~120 Hz, women ~210 Hz, children ~250 Hz); a natural contour falls
  4 semitones over the utterance with a +3 semitone accent on each word's stressed vowel (stressed
  vowels are also 1.2x longer and 1.4x louder).
- Words are separated by 30 ms; 200 ms of near-silence lead and trail; a reading longer than
  ``MAX_SECONDS`` (6 s) is redrawn (rare), so every file fits a 6 s encoder window.

What is injected (a latent proficiency ``z`` in [0, 1] per utterance drives the rates: a speaker
level ``z_s ~ Beta(1.5, 0.6)`` plus N(0, 0.1) per utterance; fluency and prosody use their own noisy
copies of ``z``, so the aspects correlate as in SO762 without being identical):

- phone errors with probability ``p = min(0.9, 0.005 + (1 - z)^3)`` per phone, so errors cluster
  in weak utterances (as in SO762); an error is a *distortion* (55 %: the phone's formants / noise
  band detuned x1.35 and mixed with broadband noise at 0 dB, clearly visible up to 8 kHz), a
  *substitution* (35 %: another phone's signature -- an L1-typical confusion where one exists:
  TH->S, DH->D, V->W, R->L, IH->IY, ... -- said with an "L1 colouring", an aspiration band at
  6.3-7.2 kHz where no clean phone has energy), or a *deletion* (10 %: not synthesised at all).
  Why the marks: a tiny model trained for minutes cannot learn forced alignment, but it can learn
  to hear how much of an utterance is marked, which is what sentence accuracy measures;
- whole-word deletions (completeness) with probability ``0.05 (1 - z)^2`` per word (never all);
- stress errors on polysyllabic words with probability ``0.01 + 0.12 (1 - z)^2``: the accent,
  length and loudness go to the wrong vowel;
- between words: a silent pause (300-700 ms) with probability ``0.02 + 0.45 (1 - z_f)^2`` or a
  filled hesitation "uh" (300-500 ms, its own signature) with probability ``0.01 + 0.25 (1 - z_f)^2``;
- pitch: flatness ``f`` (0 natural .. 1 monotone: the contour is scaled by 1 - f) and erratic
  jumps of ``e`` semitones s.d. per phone, both growing as ``z_p`` falls.

Scores (the rules; "raters" means 5 simulated experts whose integer scores are averaged, as SO762)
--------------------------------------------------------------------------------------------------
- phone (0-2, steps of 0.2): each rater gives 0/1/2 with probabilities by what was injected:
  correct (0, 0.01, 0.99), distorted (0.15, 0.70, 0.15), substituted (0.85, 0.15, 0),
  deleted (1, 0, 0); the score is the mean of the 5.
- word accuracy = round(5 x mean phone score) (0-10; a deleted word is 0);
  word stress = 5 if a stress error was injected, else 10;
  word total = round(0.8 accuracy + 0.2 stress).
- sentence accuracy: severity ``s = mean over phones of (2 - score) / 2``; base ``9.6 - 20 s``;
- sentence fluency: base ``10 - 1.3 pauses - 1.8 hesitations``;
- sentence prosodic: base ``10 - 3.5 f - 0.9 e - 0.4 pauses``;
  (each of these three: 5 raters add N(0, 0.6), round and clip to 0-10; the mean is rounded);
- completeness = 10 x fraction of words not deleted (one decimal, as SO762's float);
- total = round((0.5 accuracy + 0.25 fluency + 0.25 prosodic) x completeness / 10).
- ``mispronunciations`` lists substitutions (``pronounced-phone`` the phone said) and deletions
  (``<DEL>``); distortions are accent, not a different phone, so they are not listed.

Label skew comes out like SO762's: about 80 % of phones 2.0, most words 10, stress 5 rare,
completeness almost always 10, and a tail of weak utterances so that sentence scores spread over
the whole range. ``resource/synthetic-injections.json`` records what was injected per utterance.

Layout: SO762's Kaldi tree (``WAVE/SPEAKERxxxx/*.WAV``, ``train/`` and ``test/`` with ``wav.scp
text utt2spk spk2utt spk2age spk2gender``, ``resource/scores.json``, ``resource/text-phone`` with
_B/_I/_E/_S marks, ``resource/lexicon.txt``). Speakers do not cross splits; test speakers are
spread over the proficiency range (stratified), so held-out scores always vary. Everything is drawn
from ``numpy.random.default_rng([seed, ...])``, so a seed gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from lmm_apa.data.phones import DELETED

SAMPLE_RATE = 16000
N_RATERS = 5
UTTERANCES_PER_SPEAKER = 5
NOISE_FLOOR = 3e-4  # amplitude of the quiet-room noise under every recording (about -70 dBFS)
SILENT_SECONDS = 3.0  # length of every recording of the silent control corpus
MAX_SECONDS = 6.0  # fits the tiny Qwen2-Audio model's 6 s encoder window (lmm_apa.models.tiny)
PROFICIENCY_BETA = (1.5, 0.6)  # speaker proficiency z_s: skewed towards good, a tail of weak speakers
P_ERR_FLOOR, P_ERR_SCALE, P_ERR_POWER = 0.005, 1.0, 3.0  # phone error rate min(0.9, 0.005 + (1 - z)^3)
ERROR_MIX = (0.55, 0.35, 0.10)  # distorted, substituted, deleted

WORDS = tuple(
    """a about after again all also always am an and animal another any apple are arm around ask at
    away baby back bad bag ball banana bear beautiful because bed before big bird black blue boat book
    box boy bread bring brother brown bus but buy cake call came can car cat chair child city class
    clean close cold come cook could cup dad day desk did dinner do doctor dog door down draw dress
    drink eat egg every eye face family far farm fast father find fine fish five flower fly food for
    four friend from fruit game garden girl give go good green hair hand happy has hat have he help
    her here him his home horse hot house how hungry i ice in is it jump just kind kitchen know lake
    large last learn left like listen little live long look love lunch make man many may me milk mind
    money monkey more morning mother my name need new nice night no not now number of old on one open
    orange our out over paper park party pen people pick picture pig play please pretty put rabbit
    rain read red ride right river room run sad said school sea see she shoe short sing sister sit
    sleep small snow some song soon stand star stop story summer sun swim table take talk teacher
    tell ten thank that the their them there they thing think this three time to today together
    tomorrow too tree two under up very walk want warm water we weather went what when where white
    who why window winter with woman work write year yellow yes you young your zoo""".upper().split()
)

# --- phone signatures ------------------------------------------------------------------------
# Vowels: (F1, F2, F3) at the start and, for diphthongs, at the end.
_VOWELS = {
    "IY": ((270, 2290, 3010),), "IH": ((390, 1990, 2550),), "EH": ((530, 1840, 2480),),
    "AE": ((660, 1720, 2410),), "AH": ((520, 1190, 2390),), "AA": ((730, 1090, 2440),),
    "AO": ((570, 840, 2410),), "UH": ((440, 1020, 2240),), "UW": ((300, 870, 2240),),
    "ER": ((490, 1350, 1690),),
    "EY": ((480, 1900, 2500), (300, 2250, 2950)), "AY": ((730, 1090, 2440), (330, 2200, 2900)),
    "AW": ((730, 1090, 2440), (420, 950, 2250)), "OW": ((570, 840, 2410), (330, 880, 2240)),
    "OY": ((570, 840, 2410), (330, 2200, 2900)),
}
# Sonorants: voiced, formant-shaped, quieter than vowels.
_SONORANTS = {
    "M": (250, 1100, 2200), "N": (250, 1600, 2500), "NG": (250, 2000, 2700), "L": (360, 1300, 2900),
    "R": (420, 1300, 1600), "W": (300, 700, 2200), "Y": (280, 2200, 3000),
}
# Obstruents: (kind, noise centre Hz, noise bandwidth Hz, voiced)
_OBSTRUENTS = {
    "P": ("stop", 800, 500, False), "B": ("stop", 800, 500, True),
    "T": ("stop", 4000, 900, False), "D": ("stop", 3600, 900, True),
    "K": ("stop", 2000, 500, False), "G": ("stop", 1800, 500, True),
    "F": ("fric", 3000, 1500, False), "V": ("fric", 2600, 1300, True),
    "TH": ("fric", 3800, 1700, False), "DH": ("fric", 3300, 1500, True),
    "S": ("fric", 5000, 700, False), "Z": ("fric", 4600, 700, True),
    "SH": ("fric", 2800, 500, False), "ZH": ("fric", 2500, 500, True),
    "HH": ("fric", 1500, 900, False),
    "CH": ("affr", 3200, 600, False), "JH": ("affr", 2900, 600, True),
}
PHONES = tuple(sorted([*_VOWELS, *_SONORANTS, *_OBSTRUENTS]))
_HESITATION = (560, 1250, 2350)
L1_BAND_HZ = (6750.0, 450.0)  # the "L1 colouring" of a substituted phone: aspiration no clean phone has  # a filled "uh", held on a low flat pitch with a nasal murmur

# L1-typical confusions (Mandarin L1, as in SO762); other phones are replaced by one of their class.
_CONFUSIONS = {
    "TH": ("S", "F"), "DH": ("D", "Z"), "V": ("W", "F"), "R": ("L", "W"), "L": ("N", "R"),
    "Z": ("S", "ZH"), "N": ("NG", "L"), "IH": ("IY", "EH"), "AE": ("EH", "AA"), "UH": ("UW",),
    "EH": ("AE", "EY"), "AH": ("AA", "ER"), "SH": ("S",), "ZH": ("SH",), "JH": ("ZH", "CH"),
}


def _base(phone: str) -> str:
    return phone.rstrip("012")


def _is_vowel(phone: str) -> bool:
    return _base(phone) in _VOWELS


def _class_of(phone: str) -> tuple[str, ...]:
    b = _base(phone)
    for group in (_VOWELS, _SONORANTS, _OBSTRUENTS):
        if b in group:
            return tuple(sorted(group))
    raise ValueError(f"unknown phone {phone!r}")


@lru_cache(maxsize=1)
def lexicon() -> dict[str, list[str]]:
    """WORDS -> canonical phones, SO762 style (monosyllables' vowels carry stress 0)."""
    from lmm_apa.data.lexicon import cmudict_pronunciations

    d = cmudict_pronunciations()
    out = {}
    for w in WORDS:
        prons = d.get(w.lower())
        if not prons:
            raise ValueError(f"synthetic lexicon: {w} is not in CMUdict")
        phones = [p.replace("2", "0") for p in prons[0]]
        if sum(_is_vowel(p) for p in phones) == 1:
            phones = [_base(p) + "0" if _is_vowel(p) else p for p in phones]
        out[w] = phones
    return out


# --- planning: what is said and how it is scored ----------------------------------------------


def _raters_mean(rng: np.random.Generator, base: float, sd: float) -> int:
    """5 experts each round(base + noise), clipped to 0-10; SO762 keeps the rounded mean."""
    marks = np.clip(np.round(base + rng.normal(0.0, sd, N_RATERS)), 0, 10)
    return int(round(float(marks.mean())))


_PHONE_RATER_PROBS = {  # P(0), P(1), P(2) per rater
    "ok": (0.0, 0.01, 0.99), "distorted": (0.15, 0.70, 0.15),
    "substituted": (0.85, 0.15, 0.0), "deleted": (1.0, 0.0, 0.0),
}


def _substitute(rng: np.random.Generator, phone: str) -> str:
    b = _base(phone)
    options = _CONFUSIONS.get(b) or tuple(p for p in _class_of(phone) if p != b)
    new = str(options[rng.integers(len(options))])
    return new + "0" if new in _VOWELS else new


def sentence_pool(seed: int, n: int = 40) -> list[list[str]]:
    """The corpus' reading texts: ``n`` sentences of 3-7 words, read by many speakers each (as in
    SO762, whose few hundred texts recur across speakers and splits). Why: the text then says
    nothing about the scores, so a model cannot learn them by memorising sentences; only the audio
    tells one reading of a sentence from another."""
    rng = np.random.default_rng([seed, 3])
    return [[WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(3, 8)))] for _ in range(n)]


def _proficiencies(rng: np.random.Generator, speaker: dict) -> tuple[float, float, float]:
    """The utterance's latent proficiency ``z`` and its noisy fluency / prosody copies ``z_f``, ``z_p``."""
    z = float(np.clip(speaker["proficiency"] + rng.normal(0, 0.1), 0, 1))
    z_f = float(np.clip(z + rng.normal(0, 0.12), 0, 1))
    z_p = float(np.clip(z + rng.normal(0, 0.12), 0, 1))
    return z, z_f, z_p


def _phone_states(rng: np.random.Generator, phones: list[str], word_deleted: bool, p_err: float):
    """What happens to each phone of one word (ok / distorted / substituted / deleted) and the phone
    actually said; a word that is not deleted never loses all its phones."""
    states, said = [], []
    for p in phones:
        if word_deleted:
            state = "deleted"
        elif rng.random() < p_err:
            state = str(rng.choice(["distorted", "substituted", "deleted"], p=ERROR_MIX))
        else:
            state = "ok"
        states.append(state)
        said.append(_substitute(rng, p) if state == "substituted" else p)
    if not word_deleted and all(s == "deleted" for s in states):
        states[0], said[0] = "ok", phones[0]  # a word is never silently emptied by phone drops
    return states, said


def _accent(rng: np.random.Generator, phones: list[str], word_deleted: bool, z: float) -> tuple[int | None, bool]:
    """The vowel that carries the word's accent, and whether a stress error moved it off the
    dictionary's stressed vowel (polysyllables only)."""
    vowel_idx = [i for i, p in enumerate(phones) if _is_vowel(p)]
    stressed = next((i for i in vowel_idx if phones[i].endswith("1")), vowel_idx[0] if vowel_idx else None)
    stress_error = bool(len(vowel_idx) > 1 and not word_deleted and rng.random() < 0.01 + 0.12 * (1 - z) ** 2)
    if not stress_error:
        return stressed, False
    others = [i for i in vowel_idx if i != stressed]
    return others[rng.integers(len(others))], True


def _plan_word(rng: np.random.Generator, word: str, word_deleted: bool, z: float, p_err: float) -> dict:
    """One word's injections and its scores (phone means of 5 raters, word accuracy / stress / total)."""
    phones = list(lexicon()[word])
    states, said = _phone_states(rng, phones, word_deleted, p_err)
    accent, stress_error = _accent(rng, phones, word_deleted, z)
    phone_scores = []
    for s in states:
        marks = rng.choice(3, size=N_RATERS, p=_PHONE_RATER_PROBS[s])
        phone_scores.append(round(float(marks.mean()), 1))
    accuracy = int(round(5 * float(np.mean(phone_scores))))
    stress = 5 if stress_error else 10
    mis = [
        {"canonical-phone": p, "index": i, "pronounced-phone": DELETED if s == "deleted" else q}
        for i, (p, q, s) in enumerate(zip(phones, said, states))
        if s in ("deleted", "substituted")
    ]
    return {
        "text": word, "phones": phones, "said": said, "states": states, "accent": accent,
        "deleted": word_deleted, "stress_error": stress_error,
        "accuracy": accuracy, "stress": stress, "total": int(round(0.8 * accuracy + 0.2 * stress)),
        "phones-accuracy": phone_scores, "mispronunciations": mis,
    }


def _plan_gaps(rng: np.random.Generator, n_words: int, z_f: float) -> list[str]:
    """What comes after each word but the last: nothing, a silent pause or a filled hesitation."""
    gaps = []
    for _ in range(n_words - 1):
        r = rng.random()
        p_pause, p_hes = 0.02 + 0.45 * (1 - z_f) ** 2, 0.01 + 0.25 * (1 - z_f) ** 2
        gaps.append("pause" if r < p_pause else "hesitation" if r < p_pause + p_hes else "none")
    return gaps


def _sentence_scores(rng: np.random.Generator, words: list[dict], gaps: list[str], flatness: float,
                     erratic: float, word_deleted: np.ndarray) -> tuple[dict, float]:
    """The five sentence scores (module rules) and the accuracy severity they start from."""
    pauses, hesitations = gaps.count("pause"), gaps.count("hesitation")
    severity = float(np.mean([(2 - s) / 2 for w in words for s in w["phones-accuracy"]]))
    accuracy = _raters_mean(rng, 9.6 - 20 * severity, 0.6)
    fluency = _raters_mean(rng, 10 - 1.3 * pauses - 1.8 * hesitations, 0.6)
    prosodic = _raters_mean(rng, 10 - 3.5 * flatness - 0.9 * erratic - 0.4 * pauses, 0.6)
    completeness = round(10 * float(np.mean(~word_deleted)), 1)
    total = int(round((0.5 * accuracy + 0.25 * fluency + 0.25 * prosodic) * completeness / 10))
    scores = {"accuracy": accuracy, "completeness": completeness, "fluency": fluency,
              "prosodic": prosodic, "total": total}
    return scores, severity


def plan_utterance(rng: np.random.Generator, speaker: dict, sentences: list[list[str]] | None = None) -> dict:
    """Draw one utterance: its words (from ``sentences`` when given), what is injected where, and
    every score (module rules). The draws happen in a fixed order, so a seed gives one corpus."""
    if sentences:
        words = list(sentences[int(rng.integers(len(sentences)))])
    else:
        words = [WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(3, 8)))]
    z, z_f, z_p = _proficiencies(rng, speaker)
    p_err = min(0.9, P_ERR_FLOOR + P_ERR_SCALE * (1 - z) ** P_ERR_POWER)
    word_deleted = rng.random(len(words)) < 0.05 * (1 - z) ** 2
    if word_deleted.all():
        word_deleted[rng.integers(len(words))] = False
    plan_words = [_plan_word(rng, w, bool(word_deleted[wi]), z, p_err) for wi, w in enumerate(words)]
    gaps = _plan_gaps(rng, len(words), z_f)
    flatness = float(np.clip(1.3 * (1 - z_p) - 0.15 + rng.normal(0, 0.1), 0, 1))
    erratic = float(np.clip(6.0 * (0.6 - z_p) + rng.normal(0, 0.5), 0, 5))
    scores, severity = _sentence_scores(rng, plan_words, gaps, flatness, erratic, word_deleted)
    return {
        "text": " ".join(words), "words": plan_words, "gaps": gaps,
        "proficiency": z, "flatness": flatness, "erratic": erratic,
        "rate": float(rng.uniform(0.9, 1.1)), "f0": speaker["f0"],
        "scores": scores, "severity": severity,
    }


# --- synthesis ---------------------------------------------------------------------------------


def _envelope(freqs: np.ndarray, formants) -> np.ndarray:
    gains, widths = (1.0, 0.6, 0.3), (90.0, 120.0, 160.0)
    env = np.full_like(freqs, 0.01, dtype=np.float64)
    for f, g, bw in zip(formants, gains, widths):
        env = env + g * np.exp(-0.5 * ((freqs - f) / bw) ** 2)
    return env


def _harmonic(n: int, f0: float, formants_start, formants_end=None, rng=None) -> np.ndarray:
    """A harmonic complex on ``f0`` whose harmonics are weighted by a (gliding) formant envelope."""
    t = np.arange(n) / SAMPLE_RATE
    k = np.arange(1, int(5500 // f0) + 1)
    phase0 = rng.uniform(0, 2 * np.pi, len(k)) if rng is not None else np.zeros(len(k))
    a0 = _envelope(k * f0, formants_start)
    if formants_end is None:
        amps = a0[:, None]
    else:
        a1 = _envelope(k * f0, formants_end)
        w = np.linspace(0, 1, n)[None, :]
        amps = a0[:, None] * (1 - w) + a1[:, None] * w
    sig = (amps * np.sin(2 * np.pi * f0 * k[:, None] * t[None, :] + phase0[:, None])).sum(0)
    return sig / (np.sqrt(np.mean(sig**2)) + 1e-9)


def _band_noise(n: int, centre: float, width: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    sig = np.fft.irfft(spec * np.exp(-0.5 * ((f - centre) / width) ** 2), n)
    return sig / (np.sqrt(np.mean(sig**2)) + 1e-9)


def _duration_s(phone: str) -> float:
    b = _base(phone)
    if b in _VOWELS:
        return 0.14 if len(_VOWELS[b]) > 1 else 0.11
    if b in _SONORANTS:
        return 0.075
    return {"stop": 0.085, "fric": 0.1, "affr": 0.11}[_OBSTRUENTS[b][0]]


def _phone_signal(phone: str, n: int, f0: float, rng: np.random.Generator, detune: float = 1.0) -> np.ndarray:
    b = _base(phone)
    if b in _VOWELS:
        forms = [tuple(f * detune for f in fs) for fs in _VOWELS[b]]
        return 0.12 * _harmonic(n, f0, forms[0], forms[1] if len(forms) > 1 else None, rng)
    if b in _SONORANTS:
        return 0.07 * _harmonic(n, f0, tuple(f * detune for f in _SONORANTS[b]), None, rng)
    kind, centre, width, voiced = _OBSTRUENTS[b]
    centre = min(centre * detune, 7200.0)
    sig = np.zeros(n)
    if kind == "stop":
        closure = int(0.6 * n)
        sig[closure:] = 0.08 * _band_noise(n - closure, centre, width, rng) * np.exp(-np.linspace(0, 4, n - closure))
    elif kind == "affr":
        closure = int(0.3 * n)
        sig[closure:] = 0.06 * _band_noise(n - closure, centre, width, rng)
    else:
        sig = (0.035 if voiced else 0.05) * _band_noise(n, centre, width, rng)
    if voiced:
        sig = sig + 0.03 * _harmonic(n, f0, (250 * detune, 600 * detune, 2500), None, rng)
    return sig


def _fade(sig: np.ndarray, ms: float = 8.0) -> np.ndarray:
    m = min(int(SAMPLE_RATE * ms / 1000), len(sig) // 2)
    if m > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, m))
        sig[:m] *= ramp
        sig[-m:] *= ramp[::-1]
    return sig


def synthesize(plan: dict, rng: np.random.Generator) -> np.ndarray:
    """Render a plan to a float32 waveform at 16 kHz (deterministic given ``rng``)."""
    segments: list[np.ndarray] = []
    lead = int(0.2 * SAMPLE_RATE)
    segments.append(np.zeros(lead))
    n_phones = max(1, sum(len(w["phones"]) for w in plan["words"]))
    pos = 0
    excursion = 1.0 - plan["flatness"]
    for wi, w in enumerate(plan["words"]):
        for pi, (said, state) in enumerate(zip(w["said"], w["states"])):
            pos += 1
            if state == "deleted":
                continue
            accented = pi == w["accent"]
            semis = excursion * (1.5 - 4.0 * pos / n_phones + (3.0 if accented else 0.0))
            semis += rng.normal(0, plan["erratic"]) if plan["erratic"] > 0 else 0.0
            f0 = plan["f0"] * 2 ** (semis / 12)
            dur = _duration_s(said) * plan["rate"] * (1.2 if accented else 1.0)
            n = int(dur * SAMPLE_RATE)
            if state == "distorted":
                sig = _phone_signal(said, n, f0, rng, detune=1.35)
                rms = max(float(np.sqrt(np.mean(sig**2))), 0.03)
                sig = sig + rms * rng.standard_normal(n)
            elif state == "substituted":
                sig = _phone_signal(said, n, f0, rng)
                rms = max(float(np.sqrt(np.mean(sig**2))), 0.03)
                sig = sig + 0.8 * rms * _band_noise(n, L1_BAND_HZ[0], L1_BAND_HZ[1], rng)
            else:
                sig = _phone_signal(said, n, f0, rng)
            if accented:
                sig = sig * 1.4
            segments.append(_fade(sig))
        if wi < len(plan["gaps"]):
            gap = plan["gaps"][wi]
            segments.append(np.zeros(int(0.03 * SAMPLE_RATE)))
            if gap == "pause":
                segments.append(np.zeros(int(rng.uniform(0.3, 0.7) * SAMPLE_RATE)))
            elif gap == "hesitation":
                n = int(rng.uniform(0.3, 0.5) * SAMPLE_RATE)
                uh = 0.09 * _harmonic(n, plan["f0"] * 0.85, _HESITATION, None, rng)
                uh += 0.04 * _harmonic(n, plan["f0"] * 0.85, (250, 1100, 2200), None, rng)
                segments.append(_fade(uh, 30.0))
                segments.append(np.zeros(int(0.08 * SAMPLE_RATE)))
    segments.append(np.zeros(lead))
    wav = np.concatenate(segments)
    wav = wav + NOISE_FLOOR * rng.standard_normal(len(wav))  # a faint noise floor, like a quiet room
    peak = float(np.abs(wav).max())
    if peak > 0.95:
        wav = wav * (0.95 / peak)
    return wav.astype(np.float32)


# --- writing the tree ------------------------------------------------------------------------


def _speakers(n_utterances: int, seed: int) -> list[dict]:
    n_spk = max(1, math.ceil(n_utterances / UTTERANCES_PER_SPEAKER))
    out = []
    for s in range(n_spk):
        rng = np.random.default_rng([seed, 1, s])
        group = str(rng.choice(["child", "female", "male"], p=[0.5, 0.25, 0.25]))
        age = int(rng.integers(6, 13)) if group == "child" else int(rng.integers(18, 45))
        gender = str(rng.choice(["m", "f"])) if group == "child" else ("f" if group == "female" else "m")
        f0 = {"child": 250.0, "female": 210.0, "male": 120.0}[group] * float(rng.uniform(0.9, 1.1))
        out.append({
            "id": f"{8000 + s:04d}" if s < 2000 else f"{s:04d}", "age": age, "gender": gender,
            "f0": f0, "proficiency": float(rng.beta(*PROFICIENCY_BETA)),
        })
    return out


def _split_speakers(speakers: list[dict], test_fraction: float, seed: int) -> set[str]:
    """Test speakers, stratified by proficiency (evenly spaced in the sorted order, random offset):
    with ~12 test speakers a plain random draw can leave the held-out scores nearly constant, and a
    correlation on those says nothing."""
    if test_fraction <= 0 or len(speakers) < 2:
        return set()
    n_test = min(len(speakers) - 1, max(1, int(round(test_fraction * len(speakers)))))
    by_skill = sorted(range(len(speakers)), key=lambda i: speakers[i]["proficiency"])
    step = len(speakers) / n_test
    offset = float(np.random.default_rng([seed, 2]).uniform(0, step))
    return {speakers[by_skill[min(len(speakers) - 1, int(offset + k * step))]]["id"] for k in range(n_test)}



def split_sizes(n_utterances: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[int, int]:
    """(train, test) utterance counts ``write_synthetic_corpus`` would give, without writing
    anything (callers check that a requested corpus can hold both splits)."""
    if n_utterances < 1:
        return 0, 0
    test_spk = _split_speakers(_speakers(n_utterances, seed), test_fraction, seed)
    per = [min(UTTERANCES_PER_SPEAKER, n_utterances - k * UTTERANCES_PER_SPEAKER)
           for k in range(math.ceil(n_utterances / UTTERANCES_PER_SPEAKER))]
    ids = [s["id"] for s in _speakers(n_utterances, seed)]
    test = sum(n for sid, n in zip(ids, per) if sid in test_spk)
    return n_utterances - test, test

def _text_phone_lines(uid: str, words: list[dict]) -> list[str]:
    lines = []
    for wi, w in enumerate(words):
        ph = w["phones"]
        marks = ["_S"] if len(ph) == 1 else ["_B"] + ["_I"] * (len(ph) - 2) + ["_E"]
        lines.append(f"{uid}.{wi}\t" + " ".join(p + m for p, m in zip(ph, marks)))
    return lines


_SYNTHETIC_NOTE = """# Synthetic corpus: these are NOT human scores

Written by `lmm_apa.data.synth.write_synthetic_corpus` (seed {seed}, {n} utterances). The audio is
synthesised phone by phone, and every score in `resource/scores.json` follows from what was
injected (distorted, substituted or dropped phones, pauses, hesitations, flat or erratic pitch) by
the rules in that module's docstring; `resource/synthetic-injections.json` records the injections.
The corpus checks that a pipeline learns; it says nothing about real learners' speech.
"""


def _draw_reading(rng: np.random.Generator, speaker: dict, sentences: list[list[str]]) -> tuple[dict, np.ndarray]:
    """One reading's plan and audio; the rare reading that would not fit MAX_SECONDS is redrawn from
    the same ``rng`` (deterministic)."""
    for _ in range(20):
        plan = plan_utterance(rng, speaker, sentences)
        wav = synthesize(plan, rng)
        if len(wav) <= MAX_SECONDS * SAMPLE_RATE:
            break
    return plan, wav


def speech_samples(n: int = 24, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic readings (float32, 16 kHz) across the proficiency range, in memory: speech-like
    audio for statistics where no real speech may be downloaded, e.g. the feature normalisation a
    real Phi-4-multimodal checkpoint ships and a tiny random one must be given (lmm_apa.models.tiny)."""
    speakers = _speakers(n, seed)
    sentences = sentence_pool(seed)
    return [_draw_reading(np.random.default_rng([seed, 7, i]), speakers[i // UTTERANCES_PER_SPEAKER], sentences)[1]
            for i in range(n)]


def _score_record(plan: dict) -> dict:
    """One utterance's ``resource/scores.json`` record (SO762's schema, marked synthetic)."""
    s = plan["scores"]
    return {
        "text": plan["text"], "accuracy": s["accuracy"], "completeness": s["completeness"],
        "fluency": s["fluency"], "prosodic": s["prosodic"], "total": s["total"],
        "words": [
            {"text": w["text"], "accuracy": w["accuracy"], "stress": w["stress"], "total": w["total"],
             "phones": " ".join(w["phones"]), "phones-accuracy": w["phones-accuracy"],
             "mispronunciations": w["mispronunciations"]}
            for w in plan["words"]
        ],
        "synthetic": True,
    }


def _injection_record(plan: dict, silence: bool) -> dict:
    """What was injected into one utterance (``resource/synthetic-injections.json``)."""
    return {
        "proficiency": round(plan["proficiency"], 4), "severity": round(plan["severity"], 4),
        "gaps": plan["gaps"], "flatness": round(plan["flatness"], 4), "erratic": round(plan["erratic"], 4),
        "words": [{"states": w["states"], "said": w["said"], "stress_error": w["stress_error"],
                   "deleted": w["deleted"]} for w in plan["words"]],
        "silent_audio": silence,
    }


def silent_recording(rng: np.random.Generator) -> np.ndarray:
    """The silent control's recording: the quiet-room noise floor only (digitally silent files are,
    rightly, refused by load_audio), and one length for all: a silence as long as the reading would
    still tell the model its duration, i.e. its pauses and dropped phones -- information about the
    scores."""
    return (NOISE_FLOOR * rng.standard_normal(int(SILENT_SECONDS * SAMPLE_RATE))).astype(np.float32)


def silenced_split(corpus: str | Path, out: str | Path, split: str = "test", seed: int = 0) -> Path:
    """A copy of ``split`` of the SO762-layout tree ``corpus`` (the synthetic corpus or a real one)
    at ``out``: same lists, texts and labels, every recording replaced by ``silent_recording``.

    Why: the audio control of a trained model. Assessed on these, a model that learned from the
    sound has nothing left to go on and its held-out correlation must collapse; one that learned
    from the text or the label prior keeps it. Cheaper than training a second model on a silent
    corpus, and it tests the very model whose figures are reported. Only the split's own lists and
    ``resource/`` are copied; the recordings are written at the same relative paths."""
    import shutil

    corpus, out = Path(corpus), Path(out)
    scp = corpus / split / "wav.scp"
    if not scp.is_file():
        raise FileNotFoundError(f"{corpus}: no {split}/wav.scp to silence (an SO762-layout tree is needed)")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(corpus / split, out / split)
    if (corpus / "resource").is_dir():
        shutil.copytree(corpus / "resource", out / "resource")
    for i, line in enumerate(scp.read_text().splitlines()):
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            wav = out / parts[1].strip()
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, silent_recording(np.random.default_rng([seed, 9, i])), SAMPLE_RATE,
                     subtype="PCM_16", format="WAV")
    return out

def _write_split_lists(out: Path, split_rows: dict, scores: dict) -> None:
    """Each split's Kaldi lists (wav.scp, text, utt2spk, spk2utt, spk2age, spk2gender)."""
    for split, rows in split_rows.items():
        d = out / split
        d.mkdir(parents=True, exist_ok=True)
        spk_utts: dict[str, list[str]] = {}
        for uid, _, spk in rows:
            spk_utts.setdefault(spk["id"], []).append(uid)
        info = {spk["id"]: spk for _, _, spk in rows}
        (d / "wav.scp").write_text("".join(f"{u}\t{r}\n" for u, r, _ in rows))
        (d / "text").write_text("".join(f"{u}\t{scores[u]['text']}\n" for u, _, _ in rows))
        (d / "utt2spk").write_text("".join(f"{u} {s['id']}\n" for u, _, s in rows))
        (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk_utts.items()))
        (d / "spk2age").write_text("".join(f"{s}\t{info[s]['age']}\n" for s in spk_utts))
        (d / "spk2gender").write_text("".join(f"{s}\t{info[s]['gender']}\n" for s in spk_utts))


def _write_resources(out: Path, scores: dict, injections: dict, text_phone: list[str], seed: int, n: int) -> None:
    """``resource/``: scores, injections, text-phone, the lexicon of the words used, SYNTHETIC.md."""
    res = out / "resource"
    res.mkdir(parents=True, exist_ok=True)
    (res / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    (res / "synthetic-injections.json").write_text(json.dumps(injections, indent=1) + "\n")
    (res / "text-phone").write_text("\n".join(text_phone) + "\n")
    lex = lexicon()
    used = sorted({w for rec in scores.values() for w in rec["text"].split()})
    (res / "lexicon.txt").write_text("".join(f"{w}\t{' '.join(lex[w])}\n" for w in used))
    (res / "SYNTHETIC.md").write_text(_SYNTHETIC_NOTE.format(seed=seed, n=n))


def write_synthetic_corpus(
    out: str | Path,
    n_utterances: int = 300,
    seed: int = 0,
    test_fraction: float = 0.2,
    silence: bool = False,
    progress: Callable[[int], None] | None = None,
    n_texts: int = 40,
) -> dict:
    """Write the synthetic SO762-layout corpus to ``out`` and return a summary (counts, hours, score
    distributions). ``silence=True`` writes the same labels with silent recordings
    (``silent_recording``): a control where a model must not learn the scores without the audio.
    ``progress(n)`` is called after each recording written (n: how many so far). ``n_texts``: how
    many reading texts the speakers read (``sentence_pool``); more than the default makes a corpus
    on which a transcription cannot be learned by recognising one of a few sentences (pretraining,
    ``benchmarks/bench_localisation.py``)."""
    if n_utterances < 1:
        raise ValueError(f"n_utterances must be >= 1, got {n_utterances}")
    if n_texts < 1:
        raise ValueError(f"n_texts must be >= 1, got {n_texts}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    t0 = time.perf_counter()
    out = Path(out)
    speakers = _speakers(n_utterances, seed)
    test_spk = _split_speakers(speakers, test_fraction, seed)
    sentences = sentence_pool(seed, n_texts)
    scores, injections, text_phone, durations = {}, {}, [], []
    split_rows: dict[str, list[tuple[str, str, dict]]] = {"train": [], "test": []}
    for i in range(n_utterances):
        spk = speakers[i // UTTERANCES_PER_SPEAKER]
        uid = f"{spk['id']}{i % UTTERANCES_PER_SPEAKER + 1:05d}"
        rng = np.random.default_rng([seed, 0, i])
        plan, wav = _draw_reading(rng, spk, sentences)
        if silence:
            wav = silent_recording(rng)
        rel = f"WAVE/SPEAKER{spk['id']}/{uid}.WAV"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out / rel, wav, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        durations.append(len(wav) / SAMPLE_RATE)
        split_rows["test" if spk["id"] in test_spk else "train"].append((uid, rel, spk))
        scores[uid] = _score_record(plan)
        injections[uid] = _injection_record(plan, silence)
        text_phone += _text_phone_lines(uid, plan["words"])
        if progress is not None:
            progress(i + 1)
    _write_split_lists(out, split_rows, scores)
    _write_resources(out, scores, injections, text_phone, seed, n_utterances)
    return _summary(out, scores, split_rows, durations, seed, silence, time.perf_counter() - t0)


def _describe(values) -> dict:
    a = np.asarray(values, dtype=float)
    return {"mean": round(float(a.mean()), 3), "std": round(float(a.std()), 3),
            "min": float(a.min()), "max": float(a.max())}


def _summary(out, scores, split_rows, durations, seed, silence, elapsed) -> dict:
    phones = [p for u in scores.values() for w in u["words"] for p in w["phones-accuracy"]]
    words = [w for u in scores.values() for w in u["words"]]
    return {
        "out": str(out), "synthetic": True, "seed": seed, "silent_audio": silence,
        "utterances": len(scores), "train": len(split_rows["train"]), "test": len(split_rows["test"]),
        "speakers": len({s["id"] for rows in split_rows.values() for _, _, s in rows}),
        "hours": round(sum(durations) / 3600, 4),
        "seconds": {"mean": round(float(np.mean(durations)), 3), "max": round(float(np.max(durations)), 3)},
        "phones": {"n": len(phones), "share_2.0": round(float(np.mean(np.asarray(phones) == 2.0)), 3),
                   "mean": round(float(np.mean(phones)), 3)},
        "words": {"n": len(words), "share_accuracy_10": round(float(np.mean([w["accuracy"] == 10 for w in words])), 3),
                  "stress_5": int(sum(w["stress"] == 5 for w in words))},
        "sentence": {a: _describe([u[a] for u in scores.values()])
                     for a in ("accuracy", "fluency", "prosodic", "completeness", "total")},
        "elapsed_s": round(elapsed, 2),
    }
