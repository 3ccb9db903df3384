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
A task constrained by a grammar of its own (mdd's transcript) has no score template: ``predict``
refuses ``--backend vllm`` with constrained decoding for it before anything loads (use
``--decoding free``).

LoRA: vLLM reserves LoRA memory for ``max_lora_rank``, which must cover the adapter's own rank, read
from its ``adapter_config.json`` (``r``, and the largest ``rank_pattern`` value): Phi-4-multimodal's
speech LoRA is rank 320, Wang et al. 2025's adapters rank 8. vLLM does not load a checkpoint's
shipped LoRA by itself, so for Phi-4-multimodal without a trained adapter the shipped
``speech-lora/`` goes as the LoRA request (a trained Phi-4 adapter continues that LoRA and replaces
it). An "Unfreeze" adapter (trained audio encoder, peft ``modules_to_save``) or one trained on top of
the merged speech LoRA cannot be a vLLM LoRA: they are refused with a message naming the folder.

Tokenizers: what our code tokenizes here (the token budget of each answer, ``max_new_tokens_for``)
goes through ``lmm_apa.models.backbones.tokenizer.load_tokenizer``, the checkpoint's
``tokenizer.json`` as it is (``AutoTokenizer`` would rebuild Phi-4-multimodal's pre-tokenizer as
GPT-2's regex, since its config names ``GPT2Tokenizer``). vLLM tokenizes the prompts and detokenizes
the answers with a tokenizer it loads itself from the same checkpoint (its ``tokenizer`` argument,
by default the model folder, loaded through transformers' ``AutoTokenizer`` under whichever
transformers version vLLM is installed with). Whether that keeps Phi-4's o200k pre-tokenizer
depends on that version; it is not checked here (that needs vLLM and a GPU).

Everything vLLM is given is built by plain functions here (``lora_plan``, ``llm_kwargs``,
``build_requests``, ``sampling_kwargs``), tested without vLLM or a GPU; ``predict_vllm`` only hands
them to vLLM, imported lazily.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

VLLM_MESSAGE = "vLLM backend needs the `vllm` extra and a CUDA GPU (pip install 'lmm-apa[vllm]')"
# The ranks vLLM's LoRA config accepts for ``max_lora_rank`` (vllm.config.LoRAConfig).
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
LORA_NAME = "lmm-apa"


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


# --------------------------------------------------------------------------- what vLLM is given


@dataclass(frozen=True)
class LoraPlan:
    """The one LoRA every request carries: where it is and its rank."""

    path: str
    rank: int
    origin: str  # "adapter" (trained here) or "shipped" (the checkpoint's own LoRA)


def adapter_rank(adapter_dir: str | Path) -> int:
    """The largest LoRA rank in a peft folder's ``adapter_config.json`` (``r`` and ``rank_pattern``)."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a peft LoRA folder)")
    cfg = json.loads(config_file.read_text())
    if not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise ValueError(f"{config_file}: field 'r' (the LoRA rank) is missing or not a positive integer")
    return max([cfg["r"], *[int(v) for v in (cfg.get("rank_pattern") or {}).values()]])


def _check_servable(adapter: Path) -> None:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    if cfg.get("modules_to_save"):
        raise ValueError(f"{adapter}: an 'Unfreeze' adapter (modules_to_save: trained audio encoder) cannot be "
                         "served as a vLLM LoRA; use --backend hf, or merge it into a full model first")
    from lmm_apa.models.adapters import read_adapter_info

    if read_adapter_info(adapter).get("own_lora_merged"):
        raise ValueError(f"{adapter}: trained on top of the merged speech LoRA, which vLLM cannot merge; "
                         "use --backend hf")


def shipped_lora_dir(source: str, subfolder: str) -> Path | None:
    """The checkpoint's own LoRA folder: inside a local model folder, or fetched from the hub."""
    local = Path(source) / subfolder
    if Path(source).exists():
        return local if (local / "adapter_config.json").is_file() else None
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=[f"{subfolder}/*"])) / subfolder


def lora_plan(source: str, arch: str, adapter: str | Path | None) -> LoraPlan | None:
    """The LoRA vLLM must apply: the trained ``adapter``, else the checkpoint's shipped LoRA (Phi-4's
    speech LoRA), else none."""
    from lmm_apa.models.backbones import spec_for

    if adapter is not None:
        adapter = Path(adapter)
        rank = adapter_rank(adapter)
        _check_servable(adapter)
        return LoraPlan(str(adapter), rank, "adapter")
    sub = spec_for(arch).own_lora_subfolder
    shipped = shipped_lora_dir(source, sub) if sub else None
    if shipped is None:
        return None
    return LoraPlan(str(shipped), adapter_rank(shipped), "shipped")


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that covers ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank ({VLLM_LORA_RANKS[-1]})")


def llm_kwargs(source: str, lora: LoraPlan | None) -> dict:
    """Arguments of ``vllm.LLM``: one audio clip per prompt, LoRA sized from the adapter itself.
    Both backbones load through their transformers-native checkpoints (no remote code)."""
    kw = {"model": str(source), "limit_mm_per_prompt": {"audio": 1}, "trust_remote_code": False,
          "enable_lora": lora is not None}
    if lora is not None:
        kw.update(max_lora_rank=vllm_max_lora_rank(lora.rank), max_loras=1)
    return kw


def sampling_kwargs(tokenizer, template, fallback: str, constrained: bool) -> tuple[dict, str | None]:
    """Greedy decoding with the transformers path's token budget; with ``constrained``, the regex
    every output must match (returned apart: vLLM versions take it under different names)."""
    from lmm_apa.infer.generate import max_new_tokens_for

    kw = {"temperature": 0.0, "max_tokens": max_new_tokens_for(tokenizer, template, fallback)}
    return kw, (template_regex(template) if constrained else None)


@dataclass
class Request:
    utt: object
    prompt: dict  # vLLM's multimodal prompt: {"prompt": text, "multi_modal_data": {"audio": (wave, rate)}}
    sampling: dict
    regex: str | None


def build_request(utt, task, spec, tokenizer, constrained: bool) -> Request:
    """Everything vLLM needs for one utterance; raises ValueError (audio, lexicon, task) naming the cause."""
    from lmm_apa.data.audio import load_audio

    audio = load_audio(utt.audio, target_sr=spec.sampling_rate, max_seconds=spec.max_audio_seconds)
    template = task.template(utt)
    if constrained and template is None:
        raise ValueError(f"task {task.name!r}: vLLM constrains score templates only; use --decoding free")
    fallback = utt.text + " " + " ".join(p for w in utt.words for p in w.phones)
    sampling, regex = sampling_kwargs(tokenizer, template, fallback, constrained)
    prompt = {"prompt": spec.vllm_prompt(task.instruction(utt)),
              "multi_modal_data": {"audio": (audio, spec.sampling_rate)}}
    return Request(utt, prompt, sampling, regex)


def build_requests(utts: Sequence, task, spec, tokenizer, constrained: bool) -> tuple[list[Request], list[dict]]:
    """Requests for the utterances that can be prepared, and error lines for those that cannot."""
    from lmm_apa.infer.records import error_record

    requests, errors = [], []
    for utt in utts:
        try:
            requests.append(build_request(utt, task, spec, tokenizer, constrained))
        except Exception as e:  # noqa: BLE001 - recorded per line, the run goes on
            errors.append(error_record(utt.id, task.name, f"{type(e).__name__}: {e}"))
    return requests, errors


# --------------------------------------------------------------------------- vLLM itself


def _sampling_params(req: Request):
    """vLLM's SamplingParams; the regex as structured output (``structured_outputs`` since 0.10,
    ``guided_decoding`` before)."""
    from vllm import SamplingParams

    kw = dict(req.sampling)
    if req.regex is not None:
        try:
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(regex=req.regex)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            kw["guided_decoding"] = GuidedDecodingParams(regex=req.regex)
    return SamplingParams(**kw)


def predict_vllm(utts: Sequence, model: str | None, adapter: str | None, task, decoding: str, batch_size: int = 64) -> Iterable[dict]:
    """Prediction lines (same shape as the transformers path) for ``utts``, generated with vLLM."""
    check_vllm()
    from vllm import LLM

    from lmm_apa.infer.generate import Decoded
    from lmm_apa.infer.records import record
    from lmm_apa.models.loading import adapter_base
    from lmm_apa.models.backbones import DEFAULT_SOURCE, resolve_arch, spec_for
    from lmm_apa.models.backbones.tokenizer import load_tokenizer

    source = model or (adapter_base(adapter) if adapter else None) or DEFAULT_SOURCE
    arch = resolve_arch(source)
    spec = spec_for(arch)
    plan = lora_plan(source, arch, adapter)
    lora_request = None
    if plan is not None:
        from vllm.lora.request import LoRARequest

        lora_request = LoRARequest(LORA_NAME, 1, plan.path)
    llm = LLM(**llm_kwargs(source, plan))
    tokenizer = load_tokenizer(source)  # ours (token budgets): the checkpoint's tokenizer.json as it is
    constrained = task.decoding_for(decoding) == "constrained"
    mode = "constrained-regex" if constrained else "free"
    for start in range(0, len(utts), batch_size):
        requests, errors = build_requests(utts[start : start + batch_size], task, spec, tokenizer, constrained)
        yield from errors
        if not requests:
            continue
        outputs = llm.generate([r.prompt for r in requests], [_sampling_params(r) for r in requests],
                               lora_request=lora_request, use_tqdm=False)
        for req, o in zip(requests, outputs):
            yield record(req.utt, task, Decoded(output=o.outputs[0].text, decoding=mode))
