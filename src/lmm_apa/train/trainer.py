"""``transformers.Trainer`` subclasses: what our runs need beyond the stock trainer, and nothing else.

- ``APATrainer`` (SFT): answer-token CE (normalised per optimizer step, see the class) plus
  * the output head run on the answer positions only (``answer_logits``): the prompt and audio
    positions' logits were never read by any loss, and for the 7B model they are most of the head's
    FLOPs and a 0.5 GB float32 logit tensor per row; and a right-padded batch run without its
    attention mask, as plain causal attention (``without_right_padding_mask``), and the language
    model's last decoder layer run at those positions only, its keys and values everywhere
    (``lmm_apa.models.last_layer``): the same loss; on the tiny models x0.71-0.73 the step time of the
    long-prompt tasks (`full`, Phi-4 `apa`), x0.94 on sentence-accuracy (``benchmarks/bench_train_head.py``);
    at most 1/32 of the language model's compute saved on a 7 B backbone,
  * length-grouped batches from lengths we estimate without reading audio (``LengthGroupedSampler``),
  * atomic checkpoints: each checkpoint is written under ``output_dir/.checkpoint-tmp`` and renamed
    to ``checkpoint-N`` only when complete, so a kill mid-save never leaves a checkpoint that a
    resume would pick up half-written (transformers 5.23 writes in place).
- ``PreferenceTrainer``: SimPO + lambda*CE (Wang et al. 2025 eq. 1-3) or DPO (+ an optional CE
  term), chosen and rejected rows in one concatenated forward. DPO's reference policy is never a
  second copy of the backbone: from a fresh LoRA it is the same model with the adapter disabled
  (the base model); from an SFT adapter (``init_adapter``) it is that adapter loaded a second time
  as a frozen, named peft adapter (``reference_adapter``), switched on for the reference forward
  only (see ``reference_policy``). Loss parts (simpo / dpo, ce, margin, reward accuracy) are logged
  next to the loss.

Callbacks: ``LossLogCallback`` (``loss_log.jsonl`` + ``loss.png`` a user can plot or read) and
``GracefulStopCallback`` (SIGTERM/SIGINT -> save a checkpoint at the end of the current step and stop,
so a pre-empted job loses no step; all ranks agree on the stop step).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lmm_apa.models.backbones.base import IGNORE_INDEX
from lmm_apa.models.last_layer import last_layer_only_at
from lmm_apa.models.logits import logits_only_at
from lmm_apa.train.losses import (answer_positions, answer_token_nll, dpo_ce_loss, first_rows, sequence_logps,
                                   simpo_ce_loss)

STAGING_DIR = ".checkpoint-tmp"
TRAINER_STATE = "trainer_state.json"


def find_resume_checkpoint(output_dir: str | Path) -> Optional[str]:
    """The newest complete ``checkpoint-N`` (its ``trainer_state.json``, written last, is readable
    JSON); a half-written or foreign directory is ignored."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for d in root.iterdir():
        name = d.name
        if not (d.is_dir() and name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.split("-", 1)[1].isdigit()):
            continue
        try:
            json.loads((d / TRAINER_STATE).read_text())
        except (OSError, ValueError):
            continue
        found.append((int(name.split("-", 1)[1]), str(d)))
    return max(found)[1] if found else None


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` whose shuffle depends only on (seed, epoch): a resumed run, and every
    rank of a multi-process run, sees exactly the order an uninterrupted single run would."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int = 0):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Trainer at each epoch start
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def right_padded(attention_mask: torch.Tensor) -> bool:
    """True when every row of ``attention_mask`` is real tokens then padding (ones, then zeros)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def without_right_padding_mask(inputs: dict) -> dict:
    """``inputs`` without its ``attention_mask`` when the batch is right-padded (training batches are,
    ``lmm_apa.models.backbones.base.pad_rows``).

    Why: under causal attention a real token never sees the padding to its right, and positions
    count from 0 on every row either way, so every real position's output is the same without the
    mask; padded positions carry no label. Without a mask the attention runs as plainly causal
    (``is_causal``), which lets the fused kernels skip the upper triangle and the model skip building
    a 4-D mask. Measured on the tiny models on CPU (``benchmarks/bench_train_head.py``, whole short
    runs, loading included): 1.18x faster on the ``full`` task, 1.07x on Phi-4 ``apa``, the same
    loss. A left-padded or holed mask is kept as it is. (Qwen2-Audio reads the mask in one more place: its legacy merge of a single
    audio placeholder with the audio features, which our batches never take: ``build_batch`` expands
    the placeholder to one token per audio frame, at least 2 for the shortest clip a backbone takes.)"""
    mask = inputs.get("attention_mask")
    if mask is None or mask.dim() != 2 or not right_padded(mask):
        return inputs
    return {k: v for k, v in inputs.items() if k != "attention_mask"}


def answer_logits(model, inputs: dict, labels: torch.Tensor, **kwargs):
    """``model(**inputs)`` with the output head applied only at the positions that predict an answer
    token; ``.logits`` comes back packed ``(1, n, vocab)``, the form the losses take next to
    ``labels``. The last decoder layer runs there only too (``last_layer_only_at``: nothing else reads
    its output). A right-padded batch runs without its attention mask (``without_right_padding_mask``)."""
    keep = answer_positions(labels)
    every_layer_read = kwargs.get("output_hidden_states") or kwargs.get("output_attentions")
    trim = nullcontext() if every_layer_read else last_layer_only_at(model, keep)
    with logits_only_at(model, keep), trim:
        return model(**without_right_padding_mask(inputs), use_cache=False, **kwargs)


class APATrainer(Trainer):
    """SFT trainer: answer-token CE normalised over the whole optimizer step, length grouping by
    precomputed lengths, atomic checkpoints.

    Why our own ``compute_loss``: transformers' Qwen2-Audio computes a per-micro-batch mean CE yet
    accepts ``**kwargs``, so the stock Trainer believes the loss is already normalised for gradient
    accumulation and does not divide it: with grad_accum 8 the logged loss (and the gradient) would
    be 8x too large, and x world size under DDP. Here the summed token CE is divided by the answer-
    token count of all micro-batches of the step on all devices (``num_items_in_batch``), the same
    normalisation for every backbone.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = True  # makes Trainer count answer tokens per optimizer step

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = answer_logits(model, inputs, labels)
        total = answer_token_nll(outputs.logits, labels, reduction="sum")
        if num_items_in_batch is None:  # not in a training step: a plain token mean
            loss = total / labels[:, 1:].ne(IGNORE_INDEX).sum().clamp(min=1)
        else:
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                loss = loss * self.args.world_size  # the count is global; DDP averages the gradients
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(dataset, "lengths", None)
        if self.args.train_sampling_strategy == "group_by_length" and lengths is not None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochLengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=list(lengths), seed=seed
            )
        return super()._get_train_sampler(train_dataset)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial=trial)
        final = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        staging_root = os.path.join(run_dir, STAGING_DIR)
        if self.args.should_save and os.path.isdir(staging_root):
            shutil.rmtree(staging_root)  # leftovers of a save that was killed
        self.accelerator.wait_for_everyone()
        self.args.output_dir = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = run_dir
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            staged = os.path.join(staging_root, os.path.basename(final))
            if os.path.isdir(final):
                shutil.rmtree(final)
            os.replace(staged, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            self._rotate(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate(self, run_dir: str) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        steps = sorted(
            int(d.split("-", 1)[1]) for d in os.listdir(run_dir)
            if d.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and d.split("-", 1)[1].isdigit()
        )
        for step in steps[:-limit]:
            shutil.rmtree(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}"), ignore_errors=True)


@contextmanager
def reference_policy(peft_model, reference_adapter: Optional[str] = None):
    """The model as DPO's reference policy, for the duration of a no-grad forward.

    ``reference_adapter`` None: the trained LoRA is disabled, leaving the base model (a fresh LoRA
    starts as the base model, so this is the policy's starting point). A name: that frozen peft
    adapter (the SFT adapter the run started from, loaded a second time) is made the active one,
    then the trained adapter is made active and trainable again. Both are exact and cost no second
    backbone: the second LoRA of a rank-8 Qwen2-Audio-7B is ~20 M parameters. (Merging the SFT
    adapter into the base and training a fresh LoRA on top would be as cheap, but the result would
    no longer be one adapter on the released base model, and 4-bit weights cannot take a merge
    exactly.) Dropout is off for the reference forward (eval mode), so the reference log-probs are
    a deterministic function of the frozen weights."""
    if not hasattr(peft_model, "disable_adapter"):
        raise ValueError("DPO needs a peft (LoRA) model: its reference policy is a frozen LoRA state")
    was_training = peft_model.training
    peft_model.eval()
    try:
        if reference_adapter is None:
            with peft_model.disable_adapter():
                yield peft_model
        else:
            trained = peft_model.active_adapter
            peft_model.set_adapter(reference_adapter, inference_mode=True)
            try:
                yield peft_model
            finally:
                peft_model.set_adapter(trained)  # trainable again; the reference stays frozen
    finally:
        peft_model.train(was_training)


class PreferenceTrainer(APATrainer):
    """SimPO + lambda*CE or DPO (+ w*CE) on batches from ``PreferenceCollator`` (rows: n chosen,
    then n rejected)."""

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean; Trainer divides by grad_accum

    def __init__(self, *args, objective: str = "simpo", beta: float = 0.1, gamma: float = 0.5,
                 lambda_ce: float = 0.1, gamma_inside_beta: bool = True, dpo_ce_weight: float = 0.0,
                 reference_adapter: Optional[str] = None, **kwargs):
        if objective not in ("simpo", "dpo"):
            raise ValueError(f"PreferenceTrainer objective must be 'simpo' or 'dpo', got {objective!r}")
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.beta, self.gamma, self.lambda_ce, self.gamma_inside_beta = beta, gamma, lambda_ce, gamma_inside_beta
        self.dpo_ce_weight, self.reference_adapter = dpo_ce_weight, reference_adapter
        self._parts: dict[str, list[float]] = defaultdict(list)

    def _reference_logps(self, model, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        peft_model = self.accelerator.unwrap_model(model)
        with torch.no_grad(), reference_policy(peft_model, self.reference_adapter):
            ref_logits = answer_logits(peft_model, inputs, labels).logits
        return sequence_logps(ref_logits, labels, average=False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        n = labels.shape[0] // 2
        outputs = answer_logits(model, inputs, labels)
        logits = outputs.logits
        if self.objective == "simpo":
            r = sequence_logps(logits, labels, average=True)
            ce = answer_token_nll(*first_rows(logits, labels, n))
            loss, simpo = simpo_ce_loss(r[:n], r[n:], ce, beta=self.beta, gamma=self.gamma,
                                        lam=self.lambda_ce, gamma_inside_beta=self.gamma_inside_beta)
            parts = {"simpo": simpo, "ce": ce, "margin": (r[:n] - r[n:]).mean(),
                     "reward_accuracy": (r[:n] > r[n:]).float().mean()}
        else:
            logps = sequence_logps(logits, labels, average=False)
            ref = self._reference_logps(model, inputs, labels)
            ce = answer_token_nll(*first_rows(logits, labels, n)) if self.dpo_ce_weight else logits.new_zeros(())
            loss, dpo = dpo_ce_loss(logps[:n], logps[n:], ref[:n], ref[n:], ce, beta=self.beta,
                                    ce_weight=self.dpo_ce_weight)
            chosen_reward = self.beta * (logps[:n] - ref[:n]).detach()
            rejected_reward = self.beta * (logps[n:] - ref[n:]).detach()
            parts = {"dpo": dpo, "margin": (chosen_reward - rejected_reward).mean(),
                     "reward_accuracy": (chosen_reward > rejected_reward).float().mean()}
            if self.dpo_ce_weight:
                parts["ce"] = ce
        if self.model.training:
            for k, v in parts.items():
                self._parts[k].append(float(v.detach().float().cpu()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._parts:
            for k, values in self._parts.items():
                logs[k] = round(sum(values) / len(values), 6)
            self._parts.clear()
        super().log(logs, start_time)


class LossLogCallback(TrainerCallback):
    """``loss_log.jsonl``: one JSON line per logging step (step, epoch, loss, lr, grad_norm and the
    preference parts); ``loss.png`` at the end. On resume, lines past the resumed step are dropped
    so the log has each step once."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / "loss_log.jsonl"
        self.png = Path(output_dir) / "loss.png"

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            kept = [l for l in self.path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= state.global_step]
            self.path.write_text("".join(l + "\n" for l in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, "epoch": round(float(logs.get("epoch", state.epoch or 0)), 4)}
        for k, v in logs.items():
            if k == "learning_rate":
                k = "lr"
            if isinstance(v, (int, float)) and k not in ("epoch",):
                row[k] = v
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            plot_loss_log(self.path, self.png)


def plot_loss_log(path: str | Path, png: str | Path) -> Optional[Path]:
    """Loss (and preference parts) against step, matplotlib Agg."""
    rows = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "simpo", "ce", "dpo"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), marker="o" if len(pts) < 30 else None, label=key)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss" + (" and its parts" if len(ax.get_lines()) > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


class StderrProgressCallback(ProgressCallback):
    """Trainer's tqdm bar, with its log lines on stderr too: stdout stays the command's JSON result."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
            self.training_bar.write(str(shown), file=sys.stderr)


def use_stderr_progress(trainer: Trainer) -> None:
    if any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(StderrProgressCallback)


class GracefulStopCallback(TrainerCallback):
    """SIGTERM / SIGINT: finish the current optimizer step, save a checkpoint, stop. Under several
    processes the flag is max-reduced every step so every rank stops at the same step (a rank that
    stopped alone would hang the others in their next all-reduce)."""

    def __init__(self):
        self.requested = False
        self.stopped_at: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handler)

    def on_step_end(self, args, state, control, **kwargs):
        flag = self.requested
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            t = torch.tensor([1.0 if flag else 0.0], device=args.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        if flag:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()
