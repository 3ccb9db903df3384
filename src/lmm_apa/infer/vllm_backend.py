"""Optional vLLM backend (``pip install 'lmm-apa[vllm]'``, a CUDA GPU) for high-throughput serving and
large evaluations: ``lmm-apa predict ... --backend vllm``.

Why optional: vLLM is a CUDA-only, heavy dependency that most users of the CPU/transformers path do
not need. Where it is missing, or there is no GPU, the command stops with one clear message instead
of an ImportError deep inside.

What it does: free generation through vLLM's multimodal input (the audio goes as
``multi_modal_data``; vLLM expands the audio placeholder itself), LoRA adapters through
``LoRARequest``; ``--decoding constrained`` becomes vLLM structured output with a regex built from the
same ``Template`` (literal text forced, each slot one of its choices), so every output parses. The
exact expected-score distribution needs per-slot candidate probabilities, which only the transformers
path computes: vLLM lines carry no ``expected`` field and say ``"decoding": "constrained-regex"``.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

VLLM_MESSAGE = "vLLM backend needs the `vllm` extra and a CUDA GPU (pip install 'lmm-apa[vllm]')"


def check_vllm() -> None:
    """ValueError with the one clear message unless vllm imports and a CUDA GPU is present."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA-less build failing at import
        raise ValueError(f"{VLLM_MESSAGE}: vllm is not importable ({type(e).__name__})") from e
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{VLLM_MESSAGE}: no CUDA device is available")


def template_regex(template) -> str:
    """A regex that matches exactly the renderings of ``template`` with valid slot values."""
    from lmm_apa.prompts.template import Slot

    parts = []
    for p in template.pieces:
        if isinstance(p, Slot):
            parts.append("(" + "|".join(str(c) for c in sorted(p.choices, key=lambda c: -len(str(c)))) + ")")
        else:
            parts.append(re.escape(p))
    return "".join(parts)


def _prompt_text(arch: str, tokenizer, instruction: str) -> str:
    """vLLM's prompt for one clip: the backbone's own format (its ``BackboneSpec``)."""
    from lmm_apa.models.backbones import spec_for

    return spec_for(arch).vllm_prompt(instruction)


def _guided(sampling_kwargs: dict, regex: str):
    """Structured output across vLLM versions (``structured_outputs`` since 0.10, ``guided_decoding`` before)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return dict(sampling_kwargs, structured_outputs=StructuredOutputsParams(regex=regex))
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return dict(sampling_kwargs, guided_decoding=GuidedDecodingParams(regex=regex))


def predict_vllm(utts: Sequence, model: str | None, adapter: str | None, task, decoding: str, batch_size: int = 64) -> Iterable[dict]:
    """Prediction lines (same shape as the transformers path) for ``utts``, generated with vLLM."""
    check_vllm()
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from lmm_apa.data.audio import load_audio
    from lmm_apa.infer.generate import Decoded, max_new_tokens_for
    from lmm_apa.infer.predict import adapter_base, error_record, record
    from lmm_apa.models.backbones import DEFAULT_SOURCE, resolve_arch, spec_for

    source = model or (adapter_base(adapter) if adapter else None) or DEFAULT_SOURCE
    arch = resolve_arch(source)
    spec = spec_for(arch)
    lora = None
    if adapter:
        import json
        from pathlib import Path

        cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
        if cfg.get("modules_to_save"):
            raise ValueError(f"{adapter}: an 'Unfreeze' adapter (modules_to_save) cannot be served by vLLM LoRA; merge it first")
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("lmm-apa", 1, str(adapter))
    llm = LLM(model=source, enable_lora=lora is not None, max_lora_rank=64, limit_mm_per_prompt={"audio": 1},
              trust_remote_code=arch == "phi4-mm")
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=arch == "phi4-mm")
    mode = "free" if (task.name == "mdd" or decoding == "free") else "constrained-regex"
    for start in range(0, len(utts), batch_size):
        chunk = utts[start : start + batch_size]
        requests, params, kept = [], [], []
        for utt in chunk:
            try:
                audio = load_audio(utt.audio, target_sr=spec.sampling_rate, max_seconds=spec.max_audio_seconds)
                template = task.template(utt)
                prompt = _prompt_text(arch, tokenizer, task.instruction(utt))
            except Exception as e:  # noqa: BLE001
                yield error_record(utt.id, task.name, f"{type(e).__name__}: {e}")
                continue
            fallback = utt.text + " " + " ".join(p for w in utt.words for p in w.phones)
            kw = dict(temperature=0.0, max_tokens=max_new_tokens_for(tokenizer, template, fallback))
            if mode == "constrained-regex":
                kw = _guided(kw, template_regex(template))
            requests.append({"prompt": prompt, "multi_modal_data": {"audio": (audio, 16000)}})
            params.append(SamplingParams(**kw))
            kept.append(utt)
        if not requests:
            continue
        outputs = llm.generate(requests, params, lora_request=lora, use_tqdm=False)
        for utt, o in zip(kept, outputs):
            yield record(utt, task, Decoded(output=o.outputs[0].text, decoding=mode))
