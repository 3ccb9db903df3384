"""``train_from_config``: one training run from a YAML config, as a flat recipe (torchtune style).

config -> corpora -> (utterance, task) examples -> backbone + adapter -> Trainer -> adapter folder.

Preference training after SFT (``init_adapter``): the trainable weights start as the SFT adapter
(loaded trainable instead of a fresh LoRA), and DPO's reference policy is that SFT model, kept as a
second, frozen copy of the adapter (``REFERENCE_ADAPTER``; see ``trainer.reference_policy``).

What the run leaves in ``output_dir``:

- ``adapter/``: the trained adapter (peft ``save_pretrained``; the full model for ``method: full``),
  the tokenizer, and ``lmm_apa_adapter.json`` naming the base model, arch, method and tasks, so
  ``predict`` / ``assess`` need only ``--adapter``;
- ``adapter-epoch{N}/`` (``save_every_epoch: true``): the same, as it was at the end of epoch N
  (Ahn & Nam 2025 Table 3 evaluates epochs 1-4 of one run);
- ``checkpoint-N/``: resumable checkpoints (atomic; a re-run with the same ``output_dir`` resumes
  from the newest complete one);
- ``loss_log.jsonl`` + ``loss.png``; ``skipped.jsonl`` (utterances that could not be used, why);
- ``train_config.yaml`` (the resolved config) and ``train_summary.json`` (also returned).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import yaml

from lmm_apa.train.config import TrainConfig, load_config
from lmm_apa.train.dataset import SkipLog, TrainDataset, build_examples, estimate_lengths

REFERENCE_ADAPTER = "reference"  # the frozen SFT adapter a DPO run started from (never saved)


def _count_lines(path: Optional[Path]) -> int:
    if path is None or not path.exists():
        return 0
    return len({line for line in path.read_text().splitlines() if line.strip()})


def _device(cfg: TrainConfig) -> str:
    import torch

    if cfg.device:
        return cfg.device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


def _use_bf16(cfg: TrainConfig, device: str) -> bool:
    import torch

    if cfg.bf16 == "auto":
        return device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return bool(cfg.bf16)


def load_training_corpus(cfg: TrainConfig, skip_log: SkipLog):
    """Every ``data.train`` source (its split, its ``limit``), mixed by weight; read failures are
    recorded in ``skipped.jsonl`` and the rest trains."""
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.data.mix import mix_corpora

    corpora = []
    for src in cfg.data.train:
        corpus = load_corpus(src.path, split=src.split)
        for failure in corpus.failures:
            skip_log.record(failure.id, "*", "load", f"{failure.reason} ({failure.source or src.path})")
        if cfg.limit is not None:
            corpus.utterances = corpus.utterances[: cfg.limit]
        corpora.append(corpus)
    if len(corpora) == 1 and cfg.data.train[0].weight == 1.0:
        return corpora[0]
    return mix_corpora(corpora, weights=[s.weight for s in cfg.data.train], seed=cfg.seed)


def _training_arguments(cfg: TrainConfig, device: str, bf16: bool):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers 5)
        optim="adamw_torch",  # 'adam' in a config is AdamW with weight_decay 0 (validated in config)
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        bf16=bf16,
        # gradient checkpointing is switched on by apply_adapter (before peft wraps the model, as QLoRA needs)
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.dataloader_num_workers,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=device == "cpu",
        ddp_find_unused_parameters=False,
        save_only_model=False,
    )


def _save_adapter(trainer, backbone, cfg: TrainConfig, out: Path, name: str = "adapter") -> Path:
    """``out/<name>`` via the models area's ``save_adapter`` (peft folder or full model, plus
    ``lmm_apa_adapter.json`` naming arch, method and base model, which ``load_adapter`` and
    ``--adapter`` read), with the tokenizer and the run's tasks/objective added. Written to
    ``<name>.tmp`` and renamed: never half a model. A DPO reference adapter is left out."""
    from lmm_apa.models.adapters import save_adapter

    final, tmp = out / name, out / f"{name}.tmp"
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        if tmp.exists():
            shutil.rmtree(tmp)
        if Path(backbone.source).exists():
            backbone.source = str(Path(backbone.source).resolve())
        save_adapter(backbone, tmp, extra={
            "objective": cfg.objective, "tasks": list(cfg.tasks), "lora": cfg.lora.model_dump(),
            "quantization": "4bit" if cfg.method == "qlora" else None, "config": cfg.name,
            "init_adapter": cfg.init_adapter})
        shutil.rmtree(tmp / REFERENCE_ADAPTER, ignore_errors=True)  # peft saves extra adapters in subfolders
        if backbone.tokenizer is not None:
            backbone.tokenizer.save_pretrained(str(tmp))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final


def epoch_adapter_callback(trainer, backbone, cfg: TrainConfig, out: Path):
    """A callback writing ``out/adapter-epoch{N}`` at the end of every complete epoch N (a run
    stopped mid-epoch writes none for that epoch)."""
    from transformers import TrainerCallback

    class EpochAdapters(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            epoch = round(state.epoch or 0)
            if epoch >= 1 and abs((state.epoch or 0) - epoch) < 1e-6:
                _save_adapter(trainer, backbone, cfg, out, name=f"adapter-epoch{epoch}")

    return EpochAdapters()


def build_trainer(cfg: TrainConfig, backbone, dataset, callbacks: Sequence = ()):
    """The Trainer for ``cfg.objective``: stock SFT or the preference subclass."""
    from lmm_apa.train.collator import PreferenceCollator, SFTCollator
    from lmm_apa.train.trainer import APATrainer, PreferenceTrainer, use_stderr_progress

    device = _device(cfg)
    args = _training_arguments(cfg, device, _use_bf16(cfg, device))
    common = dict(model=backbone.model, args=args, train_dataset=dataset, callbacks=list(callbacks))
    if cfg.objective == "sft":
        trainer = APATrainer(data_collator=SFTCollator(backbone), **common)
    else:
        trainer = PreferenceTrainer(
            data_collator=PreferenceCollator(backbone), objective=cfg.objective, beta=cfg.beta, gamma=cfg.gamma,
            lambda_ce=cfg.lambda_ce, gamma_inside_beta=cfg.gamma_inside_beta, dpo_ce_weight=cfg.dpo_ce_weight,
            reference_adapter=REFERENCE_ADAPTER if cfg.objective == "dpo" and cfg.init_adapter else None, **common,
        )
    use_stderr_progress(trainer)
    return trainer


def read_init_adapter(cfg: TrainConfig) -> dict:
    """The ``lmm_apa_adapter.json`` of ``cfg.init_adapter``, checked against the config: the folder
    exists, and it was trained with the same method (the adapter's structure is what training
    continues; ``lora`` and ``qlora`` share it)."""
    from lmm_apa.models.adapters import read_adapter_info

    folder = Path(cfg.init_adapter)
    if not folder.is_dir():
        raise FileNotFoundError(f"init_adapter {folder}: no such adapter folder (train the SFT run first)")
    info = read_adapter_info(folder)
    method = "lora" if cfg.method == "qlora" else cfg.method
    if info.get("method") and info["method"] != method:
        raise ValueError(f"init_adapter {folder} was trained with method '{info['method']}', "
                         f"the config says '{cfg.method}'; set method: {info['method']}")
    return info


def _start_from_adapter(backbone, cfg: TrainConfig):
    """The trained ``init_adapter`` on ``backbone``, trainable (gradient checkpointing and 4-bit
    preparation as ``apply_adapter`` does them); for DPO, the same folder again as the frozen
    ``REFERENCE_ADAPTER``."""
    from lmm_apa.models.adapters import load_adapter

    info = read_init_adapter(cfg)
    if cfg.method == "qlora":  # before peft wraps the model (it freezes every base weight)
        from peft import prepare_model_for_kbit_training

        backbone.model = prepare_model_for_kbit_training(
            backbone.model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    load_adapter(backbone, cfg.init_adapter, is_trainable=True)
    if cfg.gradient_checkpointing and cfg.method != "qlora":  # after: a full model is replaced by the load
        model = backbone.model
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.objective == "dpo":
        backbone.model.load_adapter(cfg.init_adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    backbone.model.train()
    backbone.adapter_method = info.get("method") or ("lora" if cfg.method == "qlora" else cfg.method)
    return backbone


def prepare_backbone(cfg: TrainConfig):
    """Backbone loaded as the config says, with its adapter applied (trainable parameters set):
    a fresh one, or the trained ``init_adapter`` to continue from."""
    from lmm_apa.models.adapters import apply_adapter
    from lmm_apa.models.backbones import load_backbone

    device = _device(cfg)
    dtype = "bfloat16" if _use_bf16(cfg, device) and device.startswith("cuda") else "float32"
    backbone = load_backbone(cfg.model, arch=cfg.arch, dtype=dtype, device=device,
                             quantization="4bit" if cfg.method == "qlora" else None)
    if cfg.init_adapter:
        return _start_from_adapter(backbone, cfg)
    method = "lora" if cfg.method == "qlora" else cfg.method
    apply_adapter(backbone, method=method, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                  target_modules=cfg.lora.target_modules, gradient_checkpointing=cfg.gradient_checkpointing,
                  quantized=cfg.method == "qlora")
    if cfg.objective == "dpo" and getattr(backbone, "own_lora", None) is not None:
        raise ValueError(
            f"{cfg.model}: DPO takes its reference policy from the model with the adapter disabled, which would also "
            "drop the checkpoint's own (speech) LoRA; set lora.target_modules to train a fresh LoRA, or start from a "
            "trained adapter (init_adapter), which then serves as the reference"
        )
    return backbone


def write_summary(out: Path, summary: dict) -> Path:
    """Write ``out/train_summary.json`` whole or not at all (temp file + rename): the summary is the
    mark of a finished run, and a half-written one would read as corrupt on the next resume."""
    path, tmp = out / "train_summary.json", out / "train_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, path)
    return path


def train_from_config(
    config: Union[str, Path, dict], overrides: Optional[Sequence[str]] = None, callbacks: Sequence = ()
) -> dict:
    """Run the training the config describes; returns (and writes) ``train_summary.json``.
    ``callbacks``: extra ``TrainerCallback``s (progress hooks, tests)."""
    from transformers import set_seed

    from lmm_apa.train.trainer import GracefulStopCallback, LossLogCallback, find_resume_checkpoint

    cfg = load_config(config, list(overrides or []))
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    set_seed(cfg.seed)
    skip_log = SkipLog(out / "skipped.jsonl")

    corpus = load_training_corpus(cfg, skip_log)
    preference = cfg.objective in ("simpo", "dpo")
    examples, counts = build_examples(corpus.utterances, cfg.tasks, skip_log, preference=preference,
                                      preference_aspect=cfg.preference_aspect, seed=cfg.seed,
                                      keep_star=cfg.mdd_keep_star)
    if not examples:
        raise ValueError(
            f"no trainable examples: {len(corpus.utterances)} utterance(s) read from "
            f"{[s.path for s in cfg.data.train]}, {counts['unsupported']} (utterance, task) pair(s) lack the labels "
            f"tasks {cfg.tasks} need, {counts['failed']} failed (see {skip_log.path})"
        )

    backbone = prepare_backbone(cfg)
    max_seconds = cfg.max_audio_seconds or backbone.max_audio_seconds
    examples = estimate_lengths(examples, backbone.tokenizer, backbone.arch, skip_log, max_seconds=max_seconds)
    if not examples:
        raise ValueError(f"no trainable examples: every recording failed its header check (see {skip_log.path})")
    dataset = TrainDataset(examples, backbone.sampling_rate, skip_log, max_seconds=max_seconds)

    stop = GracefulStopCallback()
    trainer = build_trainer(cfg, backbone, dataset, callbacks=[LossLogCallback(out), stop, *callbacks])
    if cfg.save_every_epoch:
        trainer.add_callback(epoch_adapter_callback(trainer, backbone, cfg, out))
    resume = None
    if cfg.resume is not False:
        resume = find_resume_checkpoint(out)
        if cfg.resume is True and resume is None:
            raise FileNotFoundError(f"resume: true but {out} holds no complete checkpoint")
    if trainer.args.should_save:
        (out / "train_config.yaml").write_text(yaml.safe_dump(cfg.model_dump(by_alias=True), sort_keys=False))
    result = trainer.train(resume_from_checkpoint=resume)

    interrupted = stop.stopped_at is not None and trainer.state.global_step < trainer.state.max_steps
    adapter = None if interrupted else _save_adapter(trainer, backbone, cfg, out)
    summary = {
        "config": cfg.name,
        "output_dir": str(out),
        "adapter": str(adapter) if adapter else None,
        "interrupted": interrupted,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": cfg.epochs,
        "examples": len(dataset),
        "utterances": len(corpus.utterances),
        "tasks": list(cfg.tasks),
        "objective": cfg.objective,
        "method": cfg.method,
        "unsupported_pairs": counts["unsupported"],
        "skipped": _count_lines(skip_log.path),
        "train_loss": result.training_loss,
        "final_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
        "seconds": round(time.time() - started, 2),
        "loss_log": str(out / "loss_log.jsonl"),
        "init_adapter": cfg.init_adapter,
        "epoch_adapters": sorted(str(p) for p in out.glob("adapter-epoch*") if p.is_dir() and not p.name.endswith(".tmp")),
    }
    if trainer.args.should_save:
        write_summary(out, summary)
    return summary
