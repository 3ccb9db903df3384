"""Lexicon / G2P: corpus lexicon first, then CMUdict; normalisation; unknown words named."""

import pytest

from lmm_apa.data.lexicon import (
    LexiconError,
    load_lexicon,
    lexicon_words,
    parse_explicit_phones,
    phones_for_text,
    strip_position_mark,
)


def test_lexicon_words_handles_case_punctuation_and_apostrophes():
    assert lexicon_words("Don't stop, NOW!") == ["DON'T", "STOP", "NOW"]
    assert lexicon_words("'Hello,' she said\u2019s…") == ["HELLO", "SHE", "SAID'S"]
    assert lexicon_words("well-known  rock'n'roll") == ["WELL", "KNOWN", "ROCK'N'ROLL"]


def test_strip_position_mark_only_strips_kaldi_marks():
    assert [strip_position_mark(p) for p in ["W_B", "IY0_E", "AH0_S", "K_I", "SH", "EH_"]] == ["W", "IY0", "AH0", "K", "SH", "EH_"]


def test_load_lexicon_keeps_first_pronunciation(tmp_path):
    p = tmp_path / "lexicon.txt"
    p.write_text("A\tAH0\nA\tEY0\nBOB'S\tB AA0 B Z\nbear B EH1 R\n\n")
    lex = load_lexicon(p)
    assert lex == {"A": ["AH0"], "BOB'S": ["B", "AA0", "B", "Z"], "BEAR": ["B", "EH1", "R"]}


def test_load_lexicon_bad_line_names_file_and_line(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text("A\tAH0\nLONELYWORD\n")
    with pytest.raises(ValueError, match=r"lex\.txt:2"):
        load_lexicon(p)


def test_corpus_lexicon_wins_over_cmudict_and_cmudict_fills_the_rest():
    words, phones = phones_for_text("We call it, bear.", lexicon={"CALL": ["K", "AO0", "L"]})
    assert words == ["WE", "CALL", "IT", "BEAR"]
    assert phones == [["W", "IY1"], ["K", "AO0", "L"], ["IH1", "T"], ["B", "EH1", "R"]]


def test_apostrophe_word_found_in_cmudict():
    words, phones = phones_for_text("don\u2019t")
    assert words == ["DON'T"] and phones == [["D", "OW1", "N", "T"]]


def test_unknown_words_are_all_named():
    with pytest.raises(LexiconError) as e:
        phones_for_text("the zzxqv cat blorptang")
    assert e.value.words == ["ZZXQV", "BLORPTANG"]
    assert "'ZZXQV'" in str(e.value) and "'BLORPTANG'" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_explicit_phones_bypass_lookup_and_must_match_word_count():
    words, phones = phones_for_text("zzxqv cat", explicit="Z IH1 K_B S_E - K AE1 T")
    assert words == ["ZZXQV", "CAT"] and phones == [["Z", "IH1", "K", "S"], ["K", "AE1", "T"]]
    assert parse_explicit_phones([["W", "IY0"]]) == [["W", "IY0"]]
    with pytest.raises(ValueError, match="1 word group"):
        phones_for_text("we call", explicit="W IY0 K AO1 L")


def test_empty_text_is_an_error():
    with pytest.raises(ValueError, match="no words"):
        phones_for_text(" ,. ")
