"""``lmm-apa reproduce TABLE``: run every row of a paper table (train, predict, evaluate), resumably.

Layout of ``OUT`` (default ``reproduce/<table>``, ``reproduce/<table>-smoke`` with ``--smoke``):

- ``run.json``: the run's inputs (model, corpus, private corpus, decoding, smoke, ``--set`` items,
  test limit); a rerun with other inputs is refused, so finished rows never mix two runs' numbers;
- ``train/<name>/``: one training run per ``tables.Train`` (``train_from_config`` with the shipped
  config, the corpus' train split, and the parent run's adapter as ``init_adapter`` where the table
  says so); finished when its ``train_summary.json`` names an adapter;
- ``evals/<name>/``: one evaluated model per ``tables.Eval``: ``predictions-<task>.jsonl`` per task
  (``predict_corpus`` on the test split), ``predictions.jsonl`` (all tasks), ``eval/`` (the
  ``evaluate_predictions`` report) and ``metrics.json``, written last: an evaluation is finished when
  its ``metrics.json`` exists, and a rerun skips it. ``inputs.json`` stamps the folder with the
  adapter (path and its files' sizes and times), decoding and test limit its predictions were made
  with: when they change (a retrained adapter), the old predictions are cleared, not continued;
- ``table.md`` and ``table.json`` (``reproduce.render``), rewritten after every evaluation.

Why it goes on after a failure: one row's missing input (no private corpus, a corpus without the
labels a task needs) or crash must not cost the GPU hours of the others. A failed row is recorded in
the table with its reason, the rest run, and a rerun retries only what is not finished. An
interrupted training (SIGTERM / Ctrl-C, saved as a checkpoint by the trainer) stops the whole
command instead: the rerun resumes it.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from lmm_apa.reproduce.tables import Eval, Table, Train

SMOKE_TRAIN = ["bf16=false", "gradient_checkpointing=false", "batch_size=2", "grad_accum=1", "limit=4",
               "logging_steps=1", "save_steps=1000", "warmup_ratio=0.0"]
SMOKE_TEST_UTTERANCES = 4
SMOKE_CORPUS_UTTERANCES = 16


class RowError(Exception):
    """A row cannot run: an input is missing or a step failed (the message says which)."""


class Interrupted(Exception):
    """A training run stopped on a signal; rerun the command to resume it."""


@dataclass
class Inputs:
    """Everything a table run needs besides the table."""

    model: str
    corpus: Path
    out: Path
    private: Optional[dict] = None  # a data.train source ({"path", "split"?}) for Wang et al. 2025's private corpus
    decoding: str = "free"
    batch_size: int = 8
    overrides: list[str] = field(default_factory=list)  # --set items for every training run
    test_limit: Optional[int] = None  # test utterances per evaluation (smoke runs)
    device: Optional[str] = None
    smoke: bool = False


def _yaml_source(path, split: Optional[str] = None) -> str:
    return "{path: " + json.dumps(str(path)) + (f", split: {split}" if split else "") + "}"


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


class TableRun:
    """Runs the trainings and evaluations a table needs, each once, remembering failures."""

    def __init__(self, table: Table, inputs: Inputs, log: Callable[[str], None] = lambda s: None):
        self.table, self.inputs, self.log = table, inputs, log
        self.failed: dict[str, str] = {}  # "train:<name>" / "eval:<name>" -> why
        self.status: dict[str, str] = {}  # eval name -> "finished earlier" | "ran" | "failed"
        self._test_utterances = None

    # ------------------------------------------------------------------ training
    def finished_training(self, out: Path) -> bool:
        """Whether ``out/train_summary.json`` names an adapter of an uninterrupted run; a corrupt or
        unreadable summary counts as not finished (the run trains again, resuming a checkpoint)."""
        try:
            summary = json.loads((out / "train_summary.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(summary, dict) and bool(summary.get("adapter")) and not summary.get("interrupted")

    def train_dir(self, name: str) -> Path:
        return self.inputs.out / "train" / name

    def _train_overrides(self, train: Train) -> list[str]:
        from lmm_apa.train.config import load_config

        sources = [_yaml_source(self.inputs.corpus, "train")]
        if train.needs_private:
            if self.inputs.private is None:
                raise RowError(f"training run '{train.name}' ({train.config}) needs Wang et al. 2025's private corpus: "
                               "pass --private MANIFEST (sentence and word scores)")
            sources.append(_yaml_source(self.inputs.private["path"], self.inputs.private.get("split")))
        sets = [f"model={self.inputs.model}", f"data.train=[{', '.join(sources)}]",
                f"output_dir={self.train_dir(train.name)}", "init_adapter=null"]
        if train.init_from:
            sets[-1] = f"init_adapter={self.ensure_trained(train.init_from) / 'adapter'}"
        if self.inputs.smoke:
            sets += SMOKE_TRAIN
            if not load_config(train.config).save_every_epoch:
                sets.append("epochs=1")  # per-epoch tables keep their epochs: each is a row
        return sets + list(self.inputs.overrides)

    def ensure_trained(self, name: str) -> Path:
        """The finished output folder of training run ``name`` (trained now if needed)."""
        key = f"train:{name}"
        if key in self.failed:
            raise RowError(self.failed[key])
        out = self.train_dir(name)
        if self.finished_training(out):
            return out
        train = self.table.train(name)
        try:
            sets = self._train_overrides(train)
            self.log(f"training '{name}' ({train.config}) -> {out}")
            from lmm_apa.train.run import train_from_config

            summary = train_from_config(train.config, overrides=sets)
        except RowError as e:
            self.failed[key] = str(e)
            raise
        except Exception as e:  # noqa: BLE001 - recorded in the table, the other rows go on
            self.failed[key] = f"training run '{name}' ({train.config}) failed: {type(e).__name__}: {e}"
            raise RowError(self.failed[key]) from e
        finally:
            _free_memory()
        if summary.get("interrupted"):
            raise Interrupted(f"training run '{name}' was interrupted at step {summary.get('global_step')}; "
                              "rerun the same command to resume it")
        return out

    # ------------------------------------------------------------------ evaluation
    def eval_dir(self, name: str) -> Path:
        return self.inputs.out / "evals" / name

    def finished_metrics(self, name: str) -> Optional[dict]:
        path = self.eval_dir(name) / "metrics.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _test_split(self):
        if self._test_utterances is None:
            from lmm_apa.data.corpus import load_corpus

            try:
                self._test_utterances = list(load_corpus(self.inputs.corpus, split="test").utterances)
            except (FileNotFoundError, ValueError) as e:
                raise RowError(f"corpus {self.inputs.corpus}: cannot read its test split: {e}") from e
        return self._test_utterances

    def _tasks(self, ev: Eval) -> list:
        """The eval's task objects, checked against the test split's labels; without control tokens
        for a baseline that runs without them (the same task, ``control_token`` None)."""
        from lmm_apa.prompts.tasks import get_task

        utts = self._test_split()
        if not utts:
            raise RowError(f"corpus {self.inputs.corpus} holds no utterance in its test split")
        tasks = []
        for name in ev.tasks:
            task = get_task(name)
            if not any(task.supports(u) for u in utts):
                raise RowError(f"corpus {self.inputs.corpus} (test split) has no utterance with the labels task "
                               f"'{name}' needs ({'; '.join(task.missing_labels(utts[0]))})")
            tasks.append(task if ev.control_tokens else dataclasses.replace(task, control_token=None))
        return tasks

    def _adapter(self, ev: Eval) -> Optional[Path]:
        if ev.train is None:
            return None
        adapter = self.ensure_trained(ev.train) / ev.adapter
        if not adapter.is_dir():
            raise RowError(f"evaluation '{ev.name}' needs {adapter}, which training run '{ev.train}' did not write "
                           f"(config {self.table.train(ev.train).config})")
        return adapter

    def _prediction_stamp(self, adapter: Optional[Path]) -> dict:
        """What an evaluation folder's predictions depend on besides the table: the adapter (its path
        and every file's size and modification time, so a retrained adapter differs), decoding, limit."""
        files = sorted(p for p in adapter.iterdir() if p.is_file()) if adapter is not None else []
        return {"adapter": str(adapter) if adapter else None,
                "adapter_files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files},
                "decoding": self.inputs.decoding, "test_limit": self.inputs.test_limit}

    def _stamp_eval_folder(self, folder: Path, adapter: Optional[Path]) -> None:
        """Clear the folder's predictions when they were made with other inputs (resuming them would
        mix two models' outputs), then stamp it with the current inputs."""
        import shutil

        stamp, stamp_file = self._prediction_stamp(adapter), folder / "inputs.json"
        try:
            old = json.loads(stamp_file.read_text())
        except (OSError, ValueError):
            old = None
        if old != stamp:
            stale = list(folder.glob("predictions*.jsonl")) + [folder / "metrics.json"]
            if old is not None or any(p.exists() for p in stale):
                self.log(f"evaluation folder {folder}: inputs changed (or unknown); clearing its old predictions")
            for p in stale:
                p.unlink(missing_ok=True)
            shutil.rmtree(folder / "eval", ignore_errors=True)
        stamp_file.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")

    def _predict_and_score(self, ev: Eval, tasks: list, adapter: Optional[Path]) -> dict:
        from lmm_apa.evaluate.run import evaluate_predictions
        from lmm_apa.infer.predict import predict_corpus
        from lmm_apa.models.loading import load_model

        folder = self.eval_dir(ev.name)
        folder.mkdir(parents=True, exist_ok=True)
        self._stamp_eval_folder(folder, adapter)
        self.log(f"evaluating '{ev.name}' ({', '.join(ev.tasks)}; adapter {adapter or 'none: the base model'})")
        backbone = load_model(self.inputs.model, str(adapter) if adapter else None, self.inputs.device)
        files = []
        try:
            for task in tasks:
                files.append(folder / f"predictions-{task.name}.jsonl")
                predict_corpus(self.inputs.corpus, model=self.inputs.model, task=task, out=files[-1],
                               decoding=self.inputs.decoding, split="test", batch_size=self.inputs.batch_size,
                               limit=self.inputs.test_limit, backbone=backbone, progress=not self.inputs.smoke)
        finally:
            del backbone
            _free_memory()
        combined = folder / "predictions.jsonl"
        combined.write_text("".join(f.read_text(encoding="utf-8") for f in files), encoding="utf-8")
        metrics = evaluate_predictions(combined, self.inputs.corpus, out=folder / "eval", split="test")
        metrics["row"] = {"eval": ev.name, "tasks": list(ev.tasks), "adapter": str(adapter) if adapter else None,
                          "control_tokens": ev.control_tokens, "decoding": self.inputs.decoding}
        tmp = folder / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, folder / "metrics.json")  # the finish mark: written whole or not at all
        return metrics

    def run_eval(self, name: str) -> Optional[dict]:
        """``metrics.json`` of evaluation ``name``: the finished one, or computed now; None (and
        ``failed[eval:name]``) when it cannot be."""
        key = f"eval:{name}"
        if key in self.failed:
            return None
        metrics = self.finished_metrics(name)
        if metrics is not None:
            self.status.setdefault(name, "finished earlier")
            return metrics
        ev = self.table.eval(name)
        try:
            tasks = self._tasks(ev)
            metrics = self._predict_and_score(ev, tasks, self._adapter(ev))
        except RowError as e:
            self.failed[key] = str(e)
        except Interrupted:
            raise
        except Exception as e:  # noqa: BLE001 - recorded in the table, the other rows go on
            self.failed[key] = f"evaluation '{name}' failed: {type(e).__name__}: {e}"
        if key in self.failed:
            self.status[name] = "failed"
            self.log(f"[failed] {self.failed[key]}")
            return None
        self.status[name] = "ran"
        return metrics

    def all_metrics(self) -> dict[str, Optional[dict]]:
        return {ev.name: self.finished_metrics(ev.name) for ev in self.table.evals}


def eval_order(table: Table) -> list[str]:
    """Evaluation names in row order (each once)."""
    names: list[str] = []
    for row in table.rows:
        for name in row.sources.values():
            if name not in names:
                names.append(name)
    return names


def smoke_inputs(table: Table, out: Path, seed: int = 0) -> tuple[str, Path, dict]:
    """(tiny model, synthetic corpus, private source) under ``out/smoke``: the tiny random model of
    the table's backbone architecture and the synthetic SO762-like corpus; its train split stands
    in for the private corpus. Built once, reused by a rerun."""
    from lmm_apa.data.synth import write_synthetic_corpus
    from lmm_apa.models.tiny import save_tiny_model
    from lmm_apa.reproduce.tables import PHI4

    root = out / "smoke"
    corpus = root / "synthetic-corpus"
    if not (corpus / "resource" / "scores.json").is_file():
        write_synthetic_corpus(corpus, n_utterances=SMOKE_CORPUS_UTTERANCES, seed=seed, test_fraction=0.25)
    arch = "phi4-mm" if table.model == PHI4 else "qwen2-audio"
    model = root / f"tiny-{arch}"
    if not (model / "config.json").is_file():
        save_tiny_model(model, arch=arch, seed=seed, audio_seconds=6 if arch == "qwen2-audio" else None)
    return str(model), corpus, {"path": str(corpus), "split": "train"}


def default_out(name: str, smoke: bool = False) -> Path:
    """``reproduce/<table>``, or ``reproduce/<table>-smoke`` for a smoke run: the two never share a
    folder, so a real run cannot pick up the smoke run's finished rows."""
    from lmm_apa.reproduce.tables import get_table

    return Path("reproduce") / (get_table(name).name + ("-smoke" if smoke else ""))


def run_record(inputs: Inputs) -> dict:
    """The inputs that decide a table run's numbers (``run.json``); ``batch_size`` and ``device`` do not."""
    return {"model": inputs.model, "corpus": str(Path(inputs.corpus).resolve()),
            "private": dict(inputs.private, path=str(Path(inputs.private["path"]).resolve())) if inputs.private else None,
            "decoding": inputs.decoding, "smoke": inputs.smoke,
            "overrides": list(inputs.overrides), "test_limit": inputs.test_limit}


def check_run_record(out: Path, inputs: Inputs) -> None:
    """Write ``out/run.json``, or refuse when it records other inputs: finished rows of that run
    would otherwise be reported as this run's (e.g. a smoke run's numbers in a real table)."""
    record, path = run_record(inputs), out / "run.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it only if {out} holds no other run's results") from e
        changed = [f"{k}: {old.get(k)!r} there, {v!r} now" for k, v in record.items() if old.get(k) != v]
        if changed:
            raise ValueError(f"{out} holds a table run with other inputs ({'; '.join(changed)}); "
                             "pass another --out, or delete the folder to start over")
        return
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def refuse_distributed() -> None:
    """Under ``accelerate launch`` / ``torchrun`` every process would run every row and write the
    same files; the command is one process (each training still uses the device it is given)."""
    world = os.environ.get("WORLD_SIZE", "1")
    if world.strip() not in ("", "0", "1"):
        raise ValueError(f"lmm-apa reproduce runs as a single process, but WORLD_SIZE={world} "
                         "(accelerate launch / torchrun): every process would write the same files; "
                         "run it directly as `lmm-apa reproduce ...`")


def reproduce_table(name: str, model: Optional[str] = None, corpus=None, out=None, smoke: bool = False,
                    private: Optional[str] = None, decoding: Optional[str] = None, batch_size: int = 8,
                    overrides: Sequence[str] = (), device: Optional[str] = None, test_limit: Optional[int] = None,
                    log: Callable[[str], None] = lambda s: None) -> dict:
    """Run table ``name`` into ``out`` and write ``table.md`` / ``table.json`` there; returns the
    table as JSON. ``smoke``: the tiny model and the synthetic corpus (``model``/``corpus`` must
    then be omitted), a few steps per run, constrained decoding unless ``decoding`` says otherwise.
    ``overrides``: ``--set`` items for every training run; ``test_limit``: test utterances per
    evaluation (default: all; 4 in a smoke run)."""
    from lmm_apa.reproduce.render import write_table
    from lmm_apa.reproduce.tables import get_table

    from lmm_apa.infer.generate import DECODINGS

    refuse_distributed()
    table = get_table(name)
    if decoding is not None and decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    if private is not None and not Path(private).exists():
        raise FileNotFoundError(f"private corpus {private} does not exist")
    if smoke and (model is not None or corpus is not None):
        raise ValueError("--smoke runs the tiny model on the synthetic corpus; leave out --model and --corpus")
    out = Path(out) if out is not None else default_out(table.name, smoke)
    out.mkdir(parents=True, exist_ok=True)
    if smoke:
        model, corpus, smoke_private = smoke_inputs(table, out)
        inputs = Inputs(model=model, corpus=Path(corpus), out=out, private=smoke_private,
                        decoding=decoding or "constrained", batch_size=batch_size, overrides=list(overrides),
                        test_limit=test_limit or SMOKE_TEST_UTTERANCES, device=device, smoke=True)
    else:
        if corpus is None:
            raise ValueError(f"{table.name} needs --corpus: a labelled corpus with train and test splits "
                             "(Speechocean762: the OpenSLR 101 tree or the Hugging Face copy)")
        if not Path(corpus).exists():
            raise FileNotFoundError(f"corpus {corpus} does not exist")
        inputs = Inputs(model=model or table.model, corpus=Path(corpus), out=out,
                        private={"path": str(private)} if private else None, decoding=decoding or "free",
                        batch_size=batch_size, overrides=list(overrides), device=device, test_limit=test_limit)
    check_run_record(out, inputs)
    run = TableRun(table, inputs, log)
    try:
        for eval_name in eval_order(table):
            run.run_eval(eval_name)
            write_table(table, run, out)
    finally:
        result = write_table(table, run, out)
    return result
