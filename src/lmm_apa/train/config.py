"""A training run as one typed, validated object: YAML file (or a shipped config's name) + ``--set``.

Why pydantic with ``extra="forbid"``: a misspelt key in a YAML (``learning_rate`` for ``lr``) must
stop the run before hours of GPU time, naming the key and the file, instead of silently training
with the default. ``--set key=value`` takes dotted keys (``lora.r=16``) and YAML-parses the value
(``--set tasks=[apa,mdd]``, ``--set bf16=false``), so any field can be overridden from the command
line without a new flag per field.

The shipped configs (``lmm_apa/configs/<name>.yaml``) hold the papers' hyperparameters
(Wang et al. 2025 section 3.2; Ahn & Nam 2025 section 4.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LoraSettings(_Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Optional[list[str]] = None  # None: the backbone's own list (all target modules)


class DataSource(_Strict):
    """One corpus: any format ``load_corpus`` reads. ``weight`` scales how often its utterances
    appear per epoch (2.0 = twice; 0.5 = a seeded half)."""

    path: str
    split: Optional[str] = None
    weight: float = Field(1.0, gt=0.0)


class DataSettings(_Strict):
    train: list[DataSource] = Field(min_length=1)

    @field_validator("train", mode="before")
    @classmethod
    def _paths_as_sources(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        return [{"path": s} if isinstance(s, str) else s for s in v]


class TrainConfig(_Strict):
    name: Optional[str] = None
    # model
    model: str
    arch: Optional[str] = None  # qwen2-audio | phi4-mm; None = from the saved config
    method: Literal["lora", "unfreeze", "full", "qlora"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    # where the trainable weights start: a trained adapter folder (``output_dir/adapter`` of an SFT
    # run) instead of a fresh LoRA; a DPO run then takes that SFT model as its reference policy
    init_adapter: Optional[str] = None
    # objective (Wang et al. 2025 eq. 1-3; DPO)
    objective: Literal["sft", "simpo", "dpo"] = "sft"
    beta: float = Field(0.1, gt=0.0)
    gamma: float = 0.5
    lambda_ce: float = Field(0.1, ge=0.0, alias="lambda")
    gamma_inside_beta: bool = True  # Wang et al. 2025 eq. 1; False = the SimPO paper's placement
    dpo_ce_weight: float = Field(0.0, ge=0.0)  # DPO + w * CE on the chosen answer (0: plain DPO)
    preference_aspect: Optional[str] = None  # aspect the simulated negative changes; None = the task's own
    # data
    tasks: list[str] = Field(min_length=1)
    mdd_keep_star: bool = False  # mdd targets keep Speechocean762's * phones (L*) instead of the base phone
    data: DataSettings
    limit: Optional[int] = Field(None, ge=1)  # utterances per source, for quick runs
    max_audio_seconds: Optional[float] = Field(None, gt=0.0)
    # optimisation
    epochs: float = Field(3.0, gt=0.0)
    max_steps: int = -1
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    scheduler: str = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    optimizer: Literal["adamw_torch", "adam"] = "adamw_torch"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = 1.0
    bf16: Union[bool, Literal["auto"]] = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    dataloader_num_workers: int = Field(0, ge=0)
    # bookkeeping
    output_dir: str = "runs/default"
    save_steps: int = Field(500, ge=1)
    save_total_limit: Optional[int] = Field(2, ge=1)
    save_every_epoch: bool = False  # also keep the adapter of each finished epoch: adapter-epoch{N}/
    logging_steps: int = Field(10, ge=1)
    resume: Union[bool, Literal["auto"]] = "auto"  # auto: resume when output_dir has a checkpoint
    seed: int = 0
    device: Optional[str] = None  # None: CUDA when available; "cpu" forces the CPU

    @field_validator("tasks", mode="before")
    @classmethod
    def _one_task_is_a_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        try:
            from lmm_apa.prompts.tasks import TASK_NAMES
        except ImportError:  # prompts not installed yet: checked again when the run builds its data
            return v
        unknown = [t for t in v if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {list(TASK_NAMES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.objective == "dpo" and self.method not in ("lora", "qlora"):
            raise ValueError(
                "objective 'dpo' takes its reference policy from a frozen LoRA state (the init_adapter, or the base "
                f"model with the adapter disabled), which needs method 'lora' or 'qlora' (got '{self.method}')"
            )
        if self.dpo_ce_weight and self.objective != "dpo":
            raise ValueError(f"dpo_ce_weight applies to objective 'dpo' only (objective is '{self.objective}'); "
                             "SimPO's CE term is 'lambda'")
        if self.optimizer == "adam" and self.weight_decay != 0.0:
            raise ValueError("optimizer 'adam' is AdamW with weight_decay 0; set weight_decay: 0 or use adamw_torch")
        return self


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set has an empty key in {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a nested dict (values YAML-parsed); intermediate dicts are created."""
    out = dict(raw)
    for item in overrides:
        parts, value = _parse_override(item)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(config: Union[str, Path]) -> Path:
    """A path to a YAML, or the name of a shipped config (``wang2025_ft`` or ``wang2025_ft.yaml``)."""
    path = Path(config)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if str(config) == path.name and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no config file {config!r} and no shipped config of that name; shipped: {shipped_configs()}")


def load_config(config: Union[str, Path, dict], overrides: Optional[list[str]] = None) -> TrainConfig:
    """Read, override and validate; errors name the file and the offending key."""
    if isinstance(config, dict):
        raw, where = dict(config), "<dict>"
    else:
        path = resolve_config_path(config)
        where = str(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{where}: not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: the top level must be a mapping of keys to values")
        raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, list(overrides or []))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(f"{where}: invalid training config: {problems}") from None
