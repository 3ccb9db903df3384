"""The MDD answer (Ahn & Nam 2025 appendix 7.2) counts only as one object with both keys whose
values are words and phones of the inventory: junk made of key names, braces or digits is refused
(malformed or missing), never scored."""

from __future__ import annotations

import pytest

from lmm_apa.prompts.mdd_answer import is_phone_transcript, is_word_transcript, render_answer
from lmm_apa.prompts.parsing import parse_mdd

JUNK = [
    # the run that was scored with recall 1.0: transcripts made of key names
    "{'word_transcript': 'phoneme_transcript': 'phoneme_transcript': 'phoneme_transcript': 'phoneme_transcript'",
    "{'word_transcript': 'phoneme_transcript', 'phoneme_transcript': 'phoneme_transcript'}",
    "{'word_transcript': 'word_transcript', 'phoneme_transcript': 'W ER D'}",
    "{'word_transcript': 'WE CALL', 'phoneme_transcript': 'word_transcript'}",
    "{'word_transcript': '{', 'phoneme_transcript': '}'}",
    "{'word_transcript': 'WE CALL IT 42', 'phoneme_transcript': 'W IY K AO L'}",
    "{'word_transcript': 'WE CALL', 'phoneme_transcript': 'W IY KK AO L'}",
    "{'word_transcript': 'WE CALL', 'phoneme_transcript': 'W,IY,K'}",
    "{'word_transcript': 'WE CALL'}",
    "'word_transcript': 'WE CALL', 'phoneme_transcript': 'W IY K AO L'",  # no object
    "{'word_transcript': 'WE CALL', 'phoneme_transcript': 'W IY K AO L'",  # cut short
    "The speaker says we call.",
    "",
]


@pytest.mark.parametrize("text", JUNK)
def test_junk_is_refused(text):
    p = parse_mdd(text)
    assert not p.ok and p.word_transcript is None and p.phone_transcript is None
    assert p.missing or p.malformed


def test_key_names_as_values_are_malformed_with_their_raw_text():
    p = parse_mdd("{'word_transcript': 'phoneme_transcript', 'phoneme_transcript': 'phoneme_transcript'}")
    assert set(p.malformed.values()) == {"phoneme_transcript"} and p.missing == []


@pytest.mark.parametrize("text, words, phones", [
    ("{'word_transcript': 'That's an interesting observation.', 'phoneme_transcript': "
     "'DH EH S AX N IH N T AX R EH S T IH NG AA B Z AX R V EY IH SH AX N'}",
     "That's an interesting observation.", "DH EH S AX N IH N T AX R EH S T IH NG AA B Z AX R V EY IH SH AX N"),
    ('Here it is: {"phoneme_transcript": "K AE1 T", "word_transcript": "cat"} done', "cat", "K AE1 T"),
    ("{'word_transcript': 'A <unk> DAY', 'phoneme_transcript': 'AH <unk> D EY L*'}", "A <unk> DAY", "AH <unk> D EY L*"),
    ("{'word_transcript': 'WELL-KNOWN, SAID', 'phoneme_transcript': 'W EH L - N OW N | S EH D'}",
     "WELL-KNOWN, SAID", "W EH L - N OW N | S EH D"),
    ("{'word_transcript': '', 'phoneme_transcript': ''}", "", ""),  # nothing said: scored as all deletions
])
def test_answers_that_count(text, words, phones):
    p = parse_mdd(text)
    assert p.ok and (p.word_transcript, p.phone_transcript) == (words, phones)


def test_rendered_answer_parses_back():
    text = render_answer("DON'T STOP NOW", "D OW N T S T AA P N AW")
    assert parse_mdd(text).phone_transcript == "D OW N T S T AA P N AW"
    assert is_word_transcript("DON'T STOP") and not is_word_transcript("DON_T")
    assert is_phone_transcript("dh ah0 <unk>") and not is_phone_transcript("DH AH0 <UNKNOWN>")
