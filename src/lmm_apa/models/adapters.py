"""What gets trained: LoRA, "Unfreeze", full fine-tuning, QLoRA (peft + bitsandbytes).

- ``lora``: peft LoRA on the backbone's ``lora_target_modules`` inside the language model only
  (Wang et al. 2025: rank 8 on all target modules). For a checkpoint that ships its own LoRA (Phi-4-multimodal's
  speech LoRA, loaded by ``load_backbone``) that LoRA is trained further instead (Ahn & Nam 2025), unless
  ``own_lora=False``, which merges it into the base weights and adds a fresh LoRA.
- ``unfreeze`` (Ahn & Nam 2025 section 3.2): the same LoRA + the audio encoder and projector
  (``backbone.unfreeze_modules``) trained in full. They are peft ``modules_to_save``, so
  ``model.save_pretrained(dir)`` writes them beside the LoRA and ``load_adapter`` restores them.
- ``full``: every weight trainable (for tiny-model experiments); saved as a whole model.
- QLoRA = ``load_backbone(..., quantization="4bit")`` then ``apply_adapter(..., quantized=True)``:
  peft's ``prepare_model_for_kbit_training`` before the LoRA.

Saving is ``backbone.model.save_pretrained(dir)`` (or ``save_adapter``, which also records the
method); loading is ``load_adapter(backbone, dir)`` for all three methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmm_apa.models.backbones.base import Backbone
from lmm_apa.models.compat import quiet_peft_checkpointing_probe

METHODS = ("lora", "unfreeze", "full")
ADAPTER_INFO = "lmm_apa_adapter.json"  # the adapter's record: arch, method, base model (+ what training adds)


def read_adapter_info(path: str | Path) -> dict:
    """The record ``save_adapter`` wrote in an adapter folder ({} when there is none)."""
    info_file = Path(path) / ADAPTER_INFO
    return json.loads(info_file.read_text()) if info_file.is_file() else {}


@dataclass(frozen=True)
class AdapterState:
    """What apply_adapter / load_adapter put on a backbone (``backbone.adapter``): the method, and
    whether the checkpoint's shipped LoRA was merged into the base weights first."""

    method: str | None = None
    own_lora_merged: bool = False


def lora_target_regex(backbone: Backbone, target_modules: list[str] | None = None) -> str:
    """peft ``target_modules`` regex: the named linears of the language-model layers only."""
    names = target_modules or backbone.lora_target_modules
    prefix = backbone.lora_layers_prefix.replace(".", r"\.")
    return rf"^{prefix}\.\d+\..*\.({'|'.join(names)})$"


def base_model(model):
    """The transformers model under any peft wrapping, with LoRA layers removed (not merged)."""
    from peft import PeftModel

    return model.unload() if isinstance(model, PeftModel) else model


def _trainable_own_lora(model, backbone: Backbone, modules_to_save: list[str] | None):
    """The checkpoint's own LoRA re-attached trainable, plus ``modules_to_save`` (set after loading,
    since the shipped adapter file has no weights for them)."""
    from peft import PeftModel
    from peft.utils.other import _set_trainable

    subfolder = backbone.spec.own_lora_subfolder
    with quiet_peft_checkpointing_probe():
        model = PeftModel.from_pretrained(model, backbone.source, subfolder=subfolder, is_trainable=True)
    if modules_to_save:
        config = model.peft_config[model.active_adapter]
        config.modules_to_save = list(modules_to_save)
        _set_trainable(model, model.active_adapter, module_names=config.modules_to_save, inference_mode=False)
    return model


def apply_adapter(
    backbone: Backbone,
    method: str = "lora",
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: list[str] | None = None,
    gradient_checkpointing: bool = False,
    quantized: bool = False,
    own_lora: bool = True,
) -> Backbone:
    """Make ``backbone.model`` trainable as ``method`` says (in place; returns the backbone)."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if method not in METHODS:
        raise ValueError(f"unknown adapter method {method!r}; use one of {', '.join(METHODS)}")
    if quantized and method == "full":
        raise ValueError("full fine-tuning cannot train 4-bit quantized weights; use lora or unfreeze with QLoRA")
    model = backbone.model
    continue_own = own_lora and backbone.own_lora is not None and target_modules is None and method != "full"
    merged = backbone.adapter.own_lora_merged if backbone.adapter is not None else False
    if isinstance(model, PeftModel):
        if continue_own:
            model = model.unload()  # re-attached below, trainable
        else:
            model = model.merge_and_unload()  # the shipped LoRA becomes part of the base weights
            backbone.own_lora = None
            merged = True
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if gradient_checkpointing:
        # transformers >= 5 calls it activation checkpointing (the old name is deprecated there)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False

    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        modules_to_save = list(backbone.unfreeze_modules) if method == "unfreeze" else None
        if continue_own:
            model = _trainable_own_lora(model, backbone, modules_to_save)
        else:
            config = LoraConfig(
                r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_target_regex(backbone, target_modules),
                modules_to_save=modules_to_save, task_type="CAUSAL_LM",
            )
            with quiet_peft_checkpointing_probe():
                model = get_peft_model(model, config)
    model.train()
    backbone.model = model
    backbone.adapter = AdapterState(method=method, own_lora_merged=merged)
    return backbone


def trainable_parameter_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def save_adapter(backbone: Backbone, path: str | Path, extra: dict | None = None) -> Path:
    """``model.save_pretrained(path)`` plus the adapter's record (``ADAPTER_INFO``): arch, method
    and base source, and whatever the caller adds in ``extra`` (training adds its tasks and
    objective). The one place the record is written."""
    path = Path(path)
    backbone.model.save_pretrained(path)
    state = backbone.adapter or AdapterState()
    info = {"arch": backbone.arch, "method": state.method, "base": backbone.source,
            "own_lora_merged": state.own_lora_merged, **(extra or {})}
    (path / ADAPTER_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return path


def load_adapter(backbone: Backbone, path: str | Path, is_trainable: bool = False) -> Backbone:
    """Put a trained adapter (peft folder: LoRA, + unfrozen modules) or a fully fine-tuned model
    (folder with config.json) on ``backbone`` (in place; returns it). Load it on a freshly loaded
    backbone (``load_backbone``), as training started from one."""
    from peft import PeftModel

    path = Path(path)
    info = read_adapter_info(path)
    merged = bool(info.get("own_lora_merged", False))
    current = backbone.model
    if isinstance(current, PeftModel):
        # an adapter trained on top of the merged shipped LoRA needs that merge; otherwise the adapter
        # replaces the shipped LoRA it was trained from
        current = current.merge_and_unload() if merged else current.unload()
    if (path / "adapter_config.json").is_file():
        with quiet_peft_checkpointing_probe():
            model = PeftModel.from_pretrained(current, str(path), is_trainable=is_trainable)
    elif (path / "config.json").is_file():
        model = type(current).from_pretrained(str(path), dtype=current.dtype).to(current.device)
    else:
        raise FileNotFoundError(
            f"{path}: not an adapter folder (no adapter_config.json) nor a saved model (no config.json)"
        )
    if not is_trainable:
        model.eval()
    backbone.model = model
    backbone.own_lora = None
    backbone.adapter = AdapterState(method=info.get("method"), own_lora_merged=merged)
    return backbone
