"""A ready model for inference: a backbone, with a trained adapter on top when one is given.

Why here and not in ``infer``: loading is about models (which base an adapter was trained from,
how its record is read), and every consumer — ``predict``, ``assess``, ``serve``, the vLLM backend,
the benchmarks — needs the same answer. The adapter's record (``ADAPTER_INFO``) is written by
``models.adapters.save_adapter`` and read through ``read_adapter_info`` only.
"""

from __future__ import annotations

from pathlib import Path


class UntrainedTaskWarning(UserWarning):
    """The adapter's record lists the tasks it was trained on, and the asked task is not one."""


def adapter_base(adapter: str | Path) -> str | None:
    """The base model an adapter folder was trained from, if its record names one."""
    from lmm_apa.models.adapters import read_adapter_info

    return read_adapter_info(adapter).get("base") or None


def adapter_tasks(adapter: str | Path) -> list[str] | None:
    """The tasks an adapter was trained on, as its record lists them (None when it does not say)."""
    from lmm_apa.models.adapters import read_adapter_info

    tasks = read_adapter_info(adapter).get("tasks")
    return [str(t) for t in tasks] if isinstance(tasks, list) else None


def untrained_task_warning(adapter: str | Path | None, task: str) -> str | None:
    """A warning when ``adapter`` records its tasks and ``task`` is not among them (the adapter
    was never taught that task's prompt and answer); None otherwise."""
    if adapter is None:
        return None
    tasks = adapter_tasks(adapter)
    if tasks is None or task in tasks:
        return None
    return (f"adapter {adapter} was trained on task(s) {', '.join(tasks) or 'none'}, not {task!r}; "
            "its answers to this task are close to zero-shot")


def load_model(model: str | None, adapter: str | None = None, device: str | None = None, dtype=None):
    """A ready backbone: ``model`` (hub id or path; when omitted, the adapter's recorded base, else
    Qwen2-Audio-7B-Instruct), with ``adapter`` on top when given (zero-shot otherwise)."""
    from lmm_apa.models.backbones import load_backbone

    if adapter is not None and not Path(adapter).exists():
        raise FileNotFoundError(f"adapter folder not found: {adapter}")
    if model is None and adapter is not None:
        model = adapter_base(adapter)
    try:
        backbone = load_backbone(model, device=device, dtype=dtype)
    except OSError as e:  # not found locally and not reachable on the hub
        raise ValueError(f"cannot load model {model or 'Qwen/Qwen2-Audio-7B-Instruct (default)'}: {e}") from e
    if adapter is not None:
        from lmm_apa.models.adapters import load_adapter

        load_adapter(backbone, adapter)
        backbone.model.eval()
    return backbone
