"""Tokenizers load from tokenizer.json whatever class the checkpoint's config names, and every load
checks that they tokenize as that file says."""

import json

import pytest
from tokenizers import Tokenizer

from lmm_apa.models.backbones import load_backbone, phi4_mm
from lmm_apa.models.backbones.tokenizer import PROBES, check_tokenizer, load_tokenizer, tokenizer_mismatches


def _declared_class(path):
    return json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"]


def test_tiny_checkpoints_declare_the_real_classes(tiny_qwen2_audio, tiny_phi4_mm):
    assert _declared_class(tiny_qwen2_audio) == "Qwen2Tokenizer"
    assert _declared_class(tiny_phi4_mm) == "GPT2Tokenizer"  # as Phi-4-multimodal's tokenizer_config.json


def test_the_declared_gpt2_class_loses_the_o200k_regex_and_the_check_says_so(tiny_phi4_mm):
    from transformers import AutoTokenizer

    by_class = AutoTokenizer.from_pretrained(tiny_phi4_mm)
    assert type(by_class).__name__ == "GPT2Tokenizer"
    reference = Tokenizer.from_file(str(tiny_phi4_mm / "tokenizer.json"))
    assert tokenizer_mismatches(by_class, reference, ["1000"])  # GPT-2's regex keeps "1000" whole
    with pytest.raises(ValueError, match=r"tiny-phi4-mm: the loaded tokenizer \(GPT2Tokenizer\) does not tokenize as its tokenizer\.json"):
        check_tokenizer(by_class, tiny_phi4_mm)


@pytest.mark.parametrize("which", ["qwen2-audio", "phi4-mm"])
def test_load_tokenizer_keeps_the_files_pipeline(which, tiny_qwen2_audio, tiny_phi4_mm):
    path = {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[which]
    tok = load_tokenizer(path)
    reference = Tokenizer.from_file(str(path / "tokenizer.json"))
    assert tokenizer_mismatches(tok, reference, PROBES) == []
    check_tokenizer(tok, path)
    b = load_backbone(path)  # load_backbone runs the check itself
    assert tokenizer_mismatches(b.tokenizer, reference, PROBES) == []
    if b.processor is not None:
        assert tokenizer_mismatches(b.processor.tokenizer, reference, PROBES) == []
    # special tokens, placeholders and chat template come from tokenizer_config.json as before
    assert b.tokenizer.convert_tokens_to_ids(b.end_of_turn) == reference.token_to_id(b.end_of_turn)
    assert b.tokenizer.chat_template or (b.processor is not None and b.processor.chat_template)


def test_o200k_digit_runs_on_the_loaded_phi4(tiny_phi4_mm):
    tok = load_backbone(tiny_phi4_mm).tokenizer
    pieces = [tok.decode([i]) for i in tok("1000", add_special_tokens=False)["input_ids"]]
    assert pieces == ["100", "0"]  # o200k: digit runs of 1-3 from the left (GPT-2's regex: one piece)
    assert tok.audio_token == phi4_mm.SPEC.audio_token


def test_load_backbone_refuses_a_tokenizer_that_differs_from_its_file(tiny_phi4_mm, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setattr(phi4_mm, "load_tokenizer", lambda source: AutoTokenizer.from_pretrained(source))
    with pytest.raises(ValueError, match="does not tokenize as its tokenizer.json"):
        load_backbone(tiny_phi4_mm)


def test_a_folder_without_tokenizer_json_has_nothing_to_check(tmp_path, tiny_qwen2_audio):
    check_tokenizer(load_tokenizer(tiny_qwen2_audio), tmp_path)  # no file: passes, nothing to compare
