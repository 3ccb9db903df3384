"""No deprecation warnings on the hot path: a constrained decode and a training step on both tiny
backbones run with every deprecation warning turned into an error, and the KV-cache name shim
(``lmm_apa.models.compat``) also serves a transformers that still says ``past_key_values`` (5.23).

Why a test: transformers 5.24 renamed ``past_key_values`` to ``cache`` and warned once per decoding
step until the decoder moved over; a call that slips back to a deprecated name fails here first.
"""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import transformers
from packaging.version import Version

from lmm_apa.models.backbones import load_backbone
from lmm_apa.models.compat import (
    PEFT_PROBE_MESSAGE,
    cache_argument,
    cache_kwargs,
    output_cache,
    quiet_peft_checkpointing_probe,
)

torch.set_num_threads(2)

ARCHS = ["qwen2-audio", "phi4-mm"]
RENAMED = Version(transformers.__version__) >= Version("5.24")  # past_key_values -> cache
CACHE_NAME = "cache" if RENAMED else "past_key_values"
DEPRECATION = r"(?is).*deprecat"  # matched from the start; transformers, peft and torch all say "deprecated"


@pytest.fixture
def deprecations_are_errors(monkeypatch):
    """Every FutureWarning / DeprecationWarning saying "deprecated" raises, and transformers' logged
    (``warning_once``) deprecation of ``output.past_key_values`` is recorded; yields that record."""
    from transformers.utils import generic

    logged = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: logged.append(str(msg)))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("error", message=DEPRECATION, category=category)
        yield logged


def _backbone(arch, tiny_qwen2_audio, tiny_phi4_mm):
    return load_backbone({"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[arch])


def _clips(n=2):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.6, 2.3)[:n]]


@pytest.mark.parametrize("arch", ARCHS)
def test_constrained_decode_raises_no_deprecation(arch, tiny_qwen2_audio, tiny_phi4_mm, deprecations_are_errors):
    from lmm_apa.infer.generate import decode_batch
    from lmm_apa.prompts.template import SlotKey, Template

    backbone = _backbone(arch, tiny_qwen2_audio, tiny_phi4_mm)
    assert cache_argument(backbone.model) == CACHE_NAME

    def template():
        return (Template().literal("Accuracy: ").slot(SlotKey.sentence("accuracy"))
                .literal(", fluency: ").slot(SlotKey.sentence("fluency")))

    # lookahead 1: the prefill and the chunked forwards on top of the cache (cropped after each)
    out = decode_batch(backbone, _clips(), ["Rate.", "Rate this reading, please."], [template(), template()],
                       "constrained", lookahead=1)
    assert all(set(d.values) == {SlotKey.sentence("accuracy"), SlotKey.sentence("fluency")} for d in out)
    assert deprecations_are_errors == [], f"{arch}: logged deprecations {deprecations_are_errors}"


@pytest.mark.parametrize("arch", ARCHS)
def test_training_step_raises_no_deprecation(arch, tiny_qwen2_audio, tiny_phi4_mm, tmp_path, deprecations_are_errors):
    """A LoRA step with activation checkpointing on, through the project's trainer."""
    from lmm_apa.data.synth import write_synthetic_corpus
    from lmm_apa.train.run import train_from_config

    write_synthetic_corpus(tmp_path / "synth", n_utterances=4, seed=1, test_fraction=0.0)
    model = {"qwen2-audio": tiny_qwen2_audio, "phi4-mm": tiny_phi4_mm}[arch]
    summary = train_from_config("tiny_demo", [
        f"model={model}", f"data.train=[{{path: {tmp_path / 'synth'}, split: train}}]", f"output_dir={tmp_path / 'run'}",
        "method=lora", "batch_size=2", "grad_accum=1", "max_steps=1", "logging_steps=1", "save_steps=100",
        "gradient_checkpointing=true", "bf16=false", "device=cpu",
    ])
    assert summary["global_step"] == 1
    assert deprecations_are_errors == [], f"{arch}: logged deprecations {deprecations_are_errors}"


@pytest.mark.skipif(not RENAMED, reason="before transformers 5.24 past_key_values is the current name")
def test_the_fixture_catches_the_old_cache_name(tiny_qwen2_audio, deprecations_are_errors):
    """The guard above can fail: passing ``past_key_values`` raises under it, reading it is logged."""
    backbone = load_backbone(tiny_qwen2_audio)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        first = backbone.model(input_ids=ids, use_cache=True)
        with pytest.raises(FutureWarning, match="past_key_values"):
            backbone.model(input_ids=ids[:, -1:], past_key_values=output_cache(first), use_cache=True)
        first.past_key_values  # noqa: B018 - the deprecated read, for its log line
    assert any("past_key_values" in m for m in deprecations_are_errors)


def test_peft_probe_is_quieted_and_nothing_else(tiny_qwen2_audio):
    """The filter takes exactly transformers' ``is_gradient_checkpointing`` message (the read peft
    makes when it attaches an adapter); any other deprecation still shows."""
    from peft import LoraConfig, get_peft_model

    model = load_backbone(tiny_qwen2_audio).model
    with pytest.warns(FutureWarning, match=PEFT_PROBE_MESSAGE):
        model.is_gradient_checkpointing  # noqa: B018 - the read peft makes
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_peft_checkpointing_probe():
            model.is_gradient_checkpointing  # noqa: B018
            get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
            warnings.warn("`other` is deprecated", FutureWarning)
    assert [str(w.message) for w in seen if issubclass(w.category, FutureWarning)] == ["`other` is deprecated"]


# ----------------------------------------------------------------- the shim under the old name (5.23)


class _OldStyleLM(torch.nn.Module):
    """A causal LM as transformers 5.23 declares it: ``past_key_values`` in and out."""

    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return _OldOutput(logits=None, past_key_values=past_key_values)


class _NewStyleLM(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return _NewOutput(logits=None, cache=cache)


@dataclasses.dataclass
class _OldOutput:
    logits: object = None
    past_key_values: object = None


@dataclasses.dataclass
class _NewOutput:
    logits: object = None
    cache: object = None


class _PeftLike(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_base_model(self):
        return self.inner


class _DDPLike(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


@pytest.mark.parametrize("cls, name", [(_OldStyleLM, "past_key_values"), (_NewStyleLM, "cache")])
def test_cache_goes_in_and_out_under_the_declared_name(cls, name):
    cache = object()
    for model in (cls(), _PeftLike(cls()), _DDPLike(_PeftLike(cls()))):
        assert cache_argument(model) == name
        assert cache_kwargs(model, cache) == {name: cache}
    assert output_cache(cls()(input_ids=None, **cache_kwargs(cls(), cache))) is cache


def test_peft_wrapped_tiny_model_reads_the_inner_signature(tiny_qwen2_audio):
    from peft import LoraConfig, get_peft_model

    with quiet_peft_checkpointing_probe():
        model = get_peft_model(load_backbone(tiny_qwen2_audio).model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert cache_argument(model) == CACHE_NAME
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        step = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(model, output_cache(out)))
    assert output_cache(step).get_seq_length() == 4
