"""predict / assess / Azure format / vLLM guard on the tiny backbones of both architectures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lmm_apa.models.compat import cache_kwargs, output_cache
from lmm_apa.prompts.template import key_to_str, render

SENTENCES = ["WE CALL IT BEAR", "THE CAT SAT", "GOOD MORNING", "I LIKE TEA", "OPEN THE DOOR", "READ A BOOK"]


def _tone(seconds, freq, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Six utterances (lexicon phones) + one whose audio file is garbage + one silent."""
    root = tmp_path_factory.mktemp("infer_corpus")
    lines = []
    for i, text in enumerate(SENTENCES):
        sf.write(root / f"u{i}.wav", _tone(0.6 + 0.15 * i, 180 + 40 * i), 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": text})
    (root / "broken.wav").write_bytes(b"RIFF not really a wav")
    lines.insert(2, {"id": "broken", "audio": "broken.wav", "text": "HELLO THERE"})
    sf.write(root / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    lines.append({"id": "silent", "audio": "silent.wav", "text": "HELLO"})
    path = root / "corpus.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def qwen(tiny_qwen2_audio):
    from lmm_apa.models.loading import load_model

    torch.set_num_threads(2)
    return load_model(str(tiny_qwen2_audio), device="cpu")


@pytest.fixture(scope="module")
def phi(tiny_phi4_mm):
    from lmm_apa.models.loading import load_model

    return load_model(str(tiny_phi4_mm), device="cpu")


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("arch", ["qwen", "phi"])
def test_constrained_on_backbone_parses_and_matches_rendered_ids(arch, request, manifest):
    """Real chat prompt + audio: every constrained output parses, its tokens are the tokenizer's
    own tokens of the rendered answer, and the first and last slot distributions equal a
    brute-force scoring of each choice (fresh forward, no cache)."""
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.infer.constrained import answer_terminator_id, constrained_decode, template_segments
    from lmm_apa.infer.generate import model_device, to_device
    from lmm_apa.infer.predict import prepare
    from lmm_apa.prompts.tasks import get_task

    bb = request.getfixturevalue(arch)
    task = get_task("full")
    utts = [u for u in load_corpus(manifest).utterances if u.id in ("u0", "u3")]
    preps = [prepare(bb, task, u) for u in utts]
    batch = to_device(bb.build_batch([p.audio for p in preps], [p.prompt for p in preps]), model_device(bb.model))
    term = answer_terminator_id(bb)
    res = constrained_decode(bb.model, bb.tokenizer, batch, [p.template for p in preps], term, pad_id=bb.pad_token_id)
    for p, r in zip(preps, res):
        assert task.parse(r.text, p.utt).ok
        assert r.token_ids == bb.tokenizer(render(p.template, r.values), add_special_tokens=False)["input_ids"]
    # brute force on row 0 decoded alone (Phi-4's audio encoder is not batch-invariant by itself:
    # padding a clip next to a longer one changes its logits, before any decoding happens)
    import copy

    p = preps[0]
    prompt_batch = bb.build_batch([p.audio], [p.prompt])
    r = constrained_decode(bb.model, bb.tokenizer, prompt_batch, [p.template], term, pad_id=bb.pad_token_id)[0]
    if arch == "qwen":  # Qwen2-Audio is batch-invariant: the batched row equals the single one
        assert r.values == res[0].values
    ahead = constrained_decode(bb.model, bb.tokenizer, prompt_batch, [p.template], term, pad_id=bb.pad_token_id,
                               lookahead=3)[0]  # speculative slots change nothing on the real architectures
    assert ahead.values == r.values and ahead.text == r.text
    for key, probs in r.probs.items():
        assert ahead.probs[key] == pytest.approx(probs, abs=1e-5), key
    with torch.no_grad():
        prompt_out = bb.model(**prompt_batch, use_cache=True)
    n_prompt = prompt_batch["input_ids"].shape[1]
    segs, trailing = template_segments(p.template)
    before = ""
    for k, (lit, slot) in enumerate(segs):
        after = segs[k + 1][0] if k + 1 < len(segs) else trailing
        if k in (0, len(segs) - 1):
            logps = []
            for c in slot.choices:  # each choice on its own: the whole answer, plain causal attention
                ids = bb.tokenizer(before + lit + str(c) + after, add_special_tokens=False)["input_ids"]
                end = len(before + lit + str(c))
                if after == "":
                    ids, cut = ids + [term], len(ids) + 1
                else:
                    cut = next(j for j in range(1, len(ids) + 1) if len(bb.tokenizer.decode(ids[:j])) > end)
                ids = ids[:cut]
                x = torch.tensor([ids])
                with torch.no_grad():
                    out = bb.model(input_ids=x, **cache_kwargs(bb.model, copy.deepcopy(output_cache(prompt_out))),
                                   attention_mask=torch.ones(1, n_prompt + len(ids), dtype=torch.long),
                                   position_ids=torch.arange(n_prompt, n_prompt + len(ids))[None], use_cache=True)
                lp = torch.cat([prompt_out.logits[0, -1:], out.logits[0, :-1]]).float().log_softmax(-1)
                logps.append(sum(lp[i, t].item() for i, t in enumerate(ids)))
            ref = torch.softmax(torch.tensor(logps, dtype=torch.float64), 0).tolist()
            assert r.probs[slot.key] == pytest.approx(ref, abs=1e-5), slot.key
        before = before + lit + str(r.values[slot.key])
    if arch == "qwen":  # "10" is two tokens here: the last slot exercised a multi-token choice
        assert len(bb.tokenizer("10", add_special_tokens=False)["input_ids"]) == 2


def test_predict_error_lines_resume_and_both_decodings(qwen, manifest, tmp_path):
    from lmm_apa.infer.predict import predict_corpus

    out = tmp_path / "preds.jsonl"
    s = predict_corpus(manifest, backbone=qwen, task="full", out=out, decoding="constrained", batch_size=4, progress=False)
    lines = _lines(out)
    ids = [x["id"] for x in lines]
    assert sorted(ids) == sorted([f"u{i}" for i in range(6)] + ["broken", "silent"])
    errors = {x["id"]: x["error"] for x in lines if "error" in x}
    assert set(errors) == {"broken", "silent"}
    assert "broken.wav" in errors["broken"] and "silent" in errors["silent"]
    good = [x for x in lines if "error" not in x]
    assert all(x["parse_ok"] and x["decoding"] == "constrained" for x in good)
    assert s["errors"] == 2 and s["parse_ok"] == 6 and s["forward_passes"] > 0
    for x in good:  # expected scores lie within the slot's range, keys match the parsed scores
        assert set(x["expected"]) == set(x["scores"])
        assert all(0 <= v <= 10 for v in x["expected"].values())
        assert all(x["scores"][k] in (5.0, 10.0) for k in x["scores"] if k.endswith(".stress"))

    # interrupted run: keep 3 lines + half a line, rerun appends only what is missing
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:3]) + text[3][: len(text[3]) // 2])
    s2 = predict_corpus(manifest, backbone=qwen, task="full", out=out, decoding="constrained", batch_size=4, progress=False)
    again = _lines(out)
    assert s2["already_done"] == 3 and s2["written"] == 5
    assert sorted(x["id"] for x in again) == sorted(ids)  # no duplicates, nothing lost
    by_id = {x["id"]: x for x in lines}
    for x in again:  # deterministic: same answers after the resume
        assert x.get("output") == by_id[x["id"]].get("output")

    # free decoding on the same corpus: the papers' way, parse failures counted not hidden
    out_free = tmp_path / "free.jsonl"
    s3 = predict_corpus(manifest, backbone=qwen, task="sentence-accuracy", out=out_free, decoding="free", batch_size=8,
                        limit=3, progress=False)
    free = _lines(out_free)
    assert [x["id"] for x in free] == ["u0", "u1", "broken"] and "error" in free[2]
    assert all(x["decoding"] == "free" and "expected" not in x for x in free[:2])
    assert s3["written"] == 3


def test_predict_mdd_and_apa_on_phi(phi, manifest, tmp_path):
    from lmm_apa.infer.predict import predict_corpus

    out = tmp_path / "apa.jsonl"
    s = predict_corpus(manifest, backbone=phi, task="apa", out=out, decoding="constrained", batch_size=3, limit=4, progress=False)
    lines = [x for x in _lines(out) if "error" not in x]
    assert s["written"] == 4 and len(lines) == 3  # the broken file is among the first four
    for x in lines:
        assert x["output"].startswith("{'accuracy': ") and x["parse_ok"]
        assert set(x["expected"]) == {"sentence.accuracy", "sentence.fluency", "sentence.prosodic", "sentence.total"}
    out = tmp_path / "mdd.jsonl"
    s = predict_corpus(manifest, backbone=phi, task="mdd", out=out, decoding="constrained", batch_size=2, limit=2, progress=False)
    assert s["decoding"] == "constrained"  # mdd: grammar-constrained (infer.mdd_grammar), every answer parses
    mdd_lines = [x for x in _lines(out) if "error" not in x]
    assert mdd_lines and all(x["decoding"] == "constrained" and x["parse_ok"] for x in mdd_lines)


def test_assess_native_and_azure(qwen, tmp_path):
    from lmm_apa.infer.assess import assess_recording
    from lmm_apa.infer.azure import to_azure

    wav = tmp_path / "learner.wav"
    sf.write(wav, _tone(1.0, 220, sr=22050), 22050)  # resampled to 16 kHz on the way in
    native = assess_recording(wav, "We call it bear.", backbone=qwen)
    assert native["parse_ok"] and native["text"] == "WE CALL IT BEAR"
    assert [w["word"] for w in native["words"]] == ["WE", "CALL", "IT", "BEAR"]
    assert [p["phone"] for p in native["words"][0]["phones"]] == ["W", "IY1"] or len(native["words"][0]["phones"]) == 2
    assert set(native["sentence"]) == {"accuracy", "fluency", "prosodic", "completeness", "total"}
    assert all(isinstance(p["score"], float) and "expected" in p for w in native["words"] for p in w["phones"])
    az = to_azure(native)
    nb = az["NBest"][0]
    assert az["RecognitionStatus"] == "Success"
    assert set(nb["PronunciationAssessment"]) == {"AccuracyScore", "FluencyScore", "ProsodyScore", "CompletenessScore", "PronScore"}
    assert nb["PronunciationAssessment"]["AccuracyScore"] == pytest.approx(native["sentence_expected"]["accuracy"] * 10, abs=0.05)
    assert [w["Word"] for w in nb["Words"]] == ["we", "call", "it", "bear"]
    w0 = nb["Words"][0]
    assert w0["PronunciationAssessment"]["ErrorType"] in ("None", "Mispronunciation", "Omission")
    assert [p["Phoneme"] for p in w0["Phonemes"]] == [p["phone"].rstrip("012").lower() for p in native["words"][0]["phones"]]
    assert all(0 <= p["PronunciationAssessment"]["AccuracyScore"] <= 100 for w in nb["Words"] for p in w["Phonemes"])
    # the explicit phones override the lexicon; the azure format through assess_recording itself
    az2 = assess_recording(wav, "We call", backbone=qwen, phones="W IY1 - K AO1 L", output_format="azure")
    assert [p["Phoneme"] for p in az2["NBest"][0]["Words"][1]["Phonemes"]] == ["k", "ao", "l"]
    with pytest.raises(ValueError, match="word"):
        assess_recording(wav, "We call", backbone=qwen, phones="W IY1")  # 1 phone group for 2 words
    with pytest.raises(ValueError, match="format"):
        assess_recording(wav, "We call", backbone=qwen, output_format="xml")


def test_azure_error_types():
    from lmm_apa.infer.azure import sapi_phoneme, to_azure

    result = {"text": "A B C", "sentence": {"accuracy": 7, "total": 6}, "words": [
        {"word": "A", "scores": {"accuracy": 9}, "phones": [{"phone": "AH0", "score": 10}]},
        {"word": "B", "scores": {"accuracy": 4}, "phones": [{"phone": "B", "score": 4}, {"phone": "IY1", "score": 5}]},
        {"word": "C", "scores": {"accuracy": 0}, "phones": [{"phone": "S", "score": 0}, {"phone": "IY1", "score": 0}]},
    ]}
    az = to_azure(result)
    types = [w["PronunciationAssessment"]["ErrorType"] for w in az["NBest"][0]["Words"]]
    assert types == ["None", "Mispronunciation", "Omission"]
    assert az["NBest"][0]["PronunciationAssessment"] == {"AccuracyScore": 70.0, "PronScore": 60.0}
    assert sapi_phoneme("HH") == "h" and sapi_phoneme("AO1") == "ao"


def test_vllm_backend_refuses_cleanly_without_gpu(manifest, tmp_path):
    from lmm_apa.infer.vllm_backend import VLLM_MESSAGE, template_regex
    from lmm_apa.prompts.template import STRESS_CHOICES, Template

    t = Template().literal("S: ").slot(("sentence", "accuracy", None)).literal(" W/").slot(("word", "stress", 0), STRESS_CHOICES)
    import re

    assert re.fullmatch(template_regex(t), "S: 10 W/5") and not re.fullmatch(template_regex(t), "S: 11 W/5")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal path does not apply")
    r = subprocess.run(
        [sys.executable, "-m", "lmm_apa.cli", "predict", str(manifest), "--model", "unused", "--task", "full",
         "--out", str(tmp_path / "v.jsonl"), "--backend", "vllm"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2
    assert VLLM_MESSAGE in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.gpu
def test_vllm_backend_on_gpu():  # pragma: no cover - runs only where a GPU and vllm are present
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from lmm_apa.infer.vllm_backend import check_vllm

    check_vllm()
