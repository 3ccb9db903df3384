"""What the vLLM backend gives vLLM (LoRA rank and request, engine arguments, prompts, multimodal
inputs, sampling, structured-output regex), checked without vLLM or a GPU; predict_vllm's wiring
through a stand-in ``vllm`` module; and, where a GPU and vLLM exist, vLLM against the transformers
path on a tiny model."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lmm_apa.infer import vllm_backend as vb
from lmm_apa.models.backbones import spec_for
from lmm_apa.prompts.tasks import get_task
from lmm_apa.prompts.template import render

SENTENCES = ["WE CALL IT BEAR", "THE CAT SAT", "GOOD MORNING"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vllm_corpus")
    lines = []
    for i, text in enumerate(SENTENCES):
        t = np.arange(int(16000 * (0.6 + 0.2 * i))) / 16000
        sf.write(root / f"u{i}.wav", (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
        lines.append({"id": f"u{i}", "audio": f"u{i}.wav", "text": text})
    (root / "broken.wav").write_bytes(b"RIFF not really a wav")
    lines.insert(1, {"id": "broken", "audio": "broken.wav", "text": "HELLO THERE"})
    (root / "corpus.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root / "corpus.jsonl"


def _utts(corpus):
    from lmm_apa.data.corpus import load_corpus

    return list(load_corpus(corpus).utterances)


def _adapter(path: Path, r: int = 8, **extra) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, **extra}))
    return path


# --------------------------------------------------------------------------- LoRA and engine


def test_max_lora_rank_comes_from_the_adapter(tmp_path, tiny_qwen2_audio):
    speech = vb.lora_plan(str(tiny_qwen2_audio), "qwen2-audio", _adapter(tmp_path / "a320", r=320))
    assert speech.rank == 320 and speech.origin == "adapter"
    assert vb.llm_kwargs("m", speech)["max_lora_rank"] == 320  # Phi-4's speech LoRA; 64 would refuse it
    patterned = vb.lora_plan("m", "qwen2-audio", _adapter(tmp_path / "pat", r=8, rank_pattern={"q_proj": 64}))
    assert patterned.rank == 64
    assert vb.vllm_max_lora_rank(8) == 8 and vb.vllm_max_lora_rank(200) == 256
    with pytest.raises(ValueError, match="above vLLM's largest"):
        vb.vllm_max_lora_rank(600)


def test_phi4_without_adapter_serves_its_shipped_speech_lora(tiny_phi4_mm):
    plan = vb.lora_plan(str(tiny_phi4_mm), "phi4-mm", None)
    assert plan.origin == "shipped" and Path(plan.path) == tiny_phi4_mm / spec_for("phi4-mm").own_lora_subfolder
    assert plan.rank == json.loads((Path(plan.path) / "adapter_config.json").read_text())["r"]
    kw = vb.llm_kwargs(str(tiny_phi4_mm), plan)
    assert kw["enable_lora"] and kw["max_lora_rank"] == vb.vllm_max_lora_rank(plan.rank) and kw["max_loras"] == 1
    assert kw["limit_mm_per_prompt"] == {"audio": 1} and kw["trust_remote_code"] is False


def test_qwen_without_adapter_has_no_lora(tiny_qwen2_audio):
    assert vb.lora_plan(str(tiny_qwen2_audio), "qwen2-audio", None) is None
    kw = vb.llm_kwargs(str(tiny_qwen2_audio), None)
    assert kw["enable_lora"] is False and "max_lora_rank" not in kw


def test_unservable_adapters_are_refused_naming_the_folder(tmp_path):
    unfreeze = _adapter(tmp_path / "unfreeze", modules_to_save=["model.audio_tower"])
    with pytest.raises(ValueError, match=r"unfreeze: an 'Unfreeze' adapter"):
        vb.lora_plan("m", "qwen2-audio", unfreeze)
    merged = _adapter(tmp_path / "merged")
    (merged / "lmm_apa_adapter.json").write_text(json.dumps({"own_lora_merged": True}))
    with pytest.raises(ValueError, match="merged speech LoRA"):
        vb.lora_plan("m", "phi4-mm", merged)
    no_rank = _adapter(tmp_path / "norank")
    (no_rank / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"norank/adapter_config.json: field 'r'"):
        vb.lora_plan("m", "qwen2-audio", no_rank)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        vb.lora_plan("m", "qwen2-audio", tmp_path / "missing")


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("arch", ["qwen2-audio", "phi4-mm"])
def test_requests_carry_the_backbone_prompt_audio_and_regex(arch, corpus, tiny_qwen2_audio, tiny_phi4_mm):
    from transformers import AutoTokenizer

    from lmm_apa.data.audio import load_audio
    from lmm_apa.infer.generate import max_new_tokens_for

    source = {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[arch]
    tokenizer, spec = AutoTokenizer.from_pretrained(source), spec_for(arch)
    task = get_task("apa" if arch == "phi4-mm" else "sentence-total")
    utts = _utts(corpus)
    requests, errors = vb.build_requests(utts, task, spec, tokenizer, constrained=True)
    assert [e["id"] for e in errors] == ["broken"] and "error" in errors[0]
    assert [r.utt.id for r in requests] == ["u0", "u1", "u2"]
    for r in requests:
        instruction = task.instruction(r.utt)
        assert r.prompt["prompt"] == spec.vllm_prompt(instruction)
        assert ("<|APA|>" in r.prompt["prompt"]) == instruction.startswith("<|APA|>")
        wave, rate = r.prompt["multi_modal_data"]["audio"]
        assert rate == spec.sampling_rate
        assert np.array_equal(wave, load_audio(r.utt.audio, target_sr=rate, max_seconds=spec.max_audio_seconds))
        template = task.template(r.utt)
        assert r.sampling == {"temperature": 0.0, "max_tokens": max_new_tokens_for(tokenizer, template, r.utt.text + " " +
                                                                                   " ".join(p for w in r.utt.words for p in w.phones))}
        best = {s.key: max(s.choices, key=lambda c: len(str(c))) for s in template.slots}
        assert re.fullmatch(r.regex, render(template, best))
        assert not re.fullmatch(r.regex, render(template, best) + " ")
    free, _ = vb.build_requests(utts[:1], task, spec, tokenizer, constrained=False)
    assert free[0].regex is None


def test_constrained_mdd_is_refused_per_line(corpus, tiny_phi4_mm):
    from transformers import AutoTokenizer

    task = get_task("mdd")
    if task.template(_utts(corpus)[0]) is not None:
        pytest.skip("mdd has a score template now")
    requests, errors = vb.build_requests(_utts(corpus)[:1], task, spec_for("phi4-mm"),
                                         AutoTokenizer.from_pretrained(tiny_phi4_mm), constrained=True)
    assert not requests and "use --decoding free" in errors[0]["error"]


def test_predict_refuses_constrained_mdd_on_vllm_before_loading_anything(monkeypatch, corpus, tmp_path):
    """vLLM constrains score templates only: ``predict --task mdd --backend vllm`` with the default
    constrained decoding stops at the option check (no vLLM, no model, no output file)."""
    from lmm_apa.infer import predict

    def must_not_run(*a, **k):
        raise AssertionError("loaded something before refusing")

    monkeypatch.setattr(vb, "check_vllm", must_not_run)
    monkeypatch.setattr(predict, "load_model", must_not_run)
    out = tmp_path / "mdd.jsonl"
    with pytest.raises(ValueError, match=r"task 'mdd': --backend vllm cannot constrain.*--decoding free"):
        predict.predict_corpus(corpus, model="unused", task="mdd", out=out, backend="vllm", progress=False)
    assert not out.exists()
    with pytest.raises(AssertionError, match="loaded something"):  # free decoding goes on to vLLM
        predict.predict_corpus(corpus, model="unused", task="mdd", out=out, backend="vllm", decoding="free",
                               progress=False)


# --------------------------------------------------------------------------- predict_vllm's wiring


def _fake_vllm(monkeypatch, calls: dict):
    """A stand-in ``vllm`` package recording what the backend hands it; it answers each request with
    the template rendered at its longest values (what a regex-constrained model could say)."""

    class LLM:
        def __init__(self, **kw):
            calls["llm"] = kw

        def generate(self, prompts, params, lora_request=None, use_tqdm=False):
            calls.setdefault("generate", []).append((prompts, params, lora_request))
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=calls["answer"](p))]) for p in prompts]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class StructuredOutputsParams:
        def __init__(self, regex):
            self.regex = regex

    class LoRARequest:
        def __init__(self, name, lora_id, path):
            self.name, self.lora_id, self.path = name, lora_id, path

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = StructuredOutputsParams
    lora_pkg, lora_req = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    lora_req.LoRARequest = LoRARequest
    for name, mod in {"vllm": vllm, "vllm.sampling_params": sampling, "vllm.lora": lora_pkg,
                      "vllm.lora.request": lora_req}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(vb, "check_vllm", lambda: None)


def test_predict_vllm_hands_vllm_the_built_requests(monkeypatch, corpus, tiny_qwen2_audio, tmp_path):
    calls: dict = {}
    _fake_vllm(monkeypatch, calls)
    task = get_task("sentence-total")
    utts = _utts(corpus)
    by_prompt = {spec_for("qwen2-audio").vllm_prompt(task.instruction(u)): u for u in utts if u.id != "broken"}

    def answer(prompt):
        template = task.template(by_prompt[prompt["prompt"]])
        return render(template, {s.key: max(s.choices, key=lambda c: len(str(c))) for s in template.slots})

    calls["answer"] = answer
    from lmm_apa.models.backbones import tokenizer as tok

    loaded = []  # our token budgets use the checkpoint's tokenizer.json as it is, not AutoTokenizer
    monkeypatch.setattr(tok, "load_tokenizer", lambda source, _load=tok.load_tokenizer: loaded.append(source) or _load(source))
    adapter = _adapter(tmp_path / "adapter", r=16)
    recs = list(vb.predict_vllm(utts, model=str(tiny_qwen2_audio), adapter=str(adapter), task=task,
                                decoding="constrained", batch_size=2))
    assert calls["llm"]["max_lora_rank"] == 16 and calls["llm"]["model"] == str(tiny_qwen2_audio)
    assert loaded == [str(tiny_qwen2_audio)]
    assert sorted(r["id"] for r in recs) == sorted(u.id for u in utts)
    assert all(r["parse_ok"] and r["decoding"] == "constrained-regex" for r in recs if r["id"] != "broken")
    assert "error" in next(r for r in recs if r["id"] == "broken")
    assert [len(p) for p, _, _ in calls["generate"]] == [1, 2]  # batches of 2: u0 (+ broken), u1 u2
    for prompts, params, lora in calls["generate"]:
        assert lora.path == str(adapter) and lora.name == vb.LORA_NAME
        assert all(p.kw["temperature"] == 0.0 and p.kw["structured_outputs"].regex for p in params)


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_vllm_predicts_like_the_transformers_path(corpus, tiny_qwen2_audio, tmp_path):  # pragma: no cover
    """vLLM and the transformers path, greedy and free, on the tiny Qwen2-Audio, both in float16 (vLLM's
    "auto" for a float32 checkpoint): the same answers. A random tiny model's next-token distribution
    is nearly flat, so two kernels' rounding may flip a near-tie: at most one utterance may differ.
    (Not run where this was written: no machine here had both vLLM and a GPU.)"""
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from lmm_apa.infer.predict import predict_corpus
    from lmm_apa.models.loading import load_model

    hf, vl = tmp_path / "hf.jsonl", tmp_path / "vllm.jsonl"
    backbone = load_model(str(tiny_qwen2_audio), device="cuda", dtype="float16")
    predict_corpus(corpus, task="sentence-total", decoding="free", out=hf, backbone=backbone, progress=False)
    predict_corpus(corpus, model=str(tiny_qwen2_audio), task="sentence-total", decoding="free", out=vl,
                   backend="vllm", progress=False)
    a = {r["id"]: r for r in map(json.loads, hf.read_text().splitlines())}
    b = {r["id"]: r for r in map(json.loads, vl.read_text().splitlines())}
    assert a.keys() == b.keys() and ("error" in a["broken"]) and ("error" in b["broken"])
    differ = {i: (a[i]["output"], b[i]["output"]) for i in a if "error" not in a[i] and a[i]["output"] != b[i]["output"]}
    assert len(differ) <= 1, differ
