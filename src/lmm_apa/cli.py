"""``lmm-apa``: the command line. Thin on purpose: every command parses its options and
calls one function of the package, so the same work is reachable from Python and from tests.

Heavy imports (torch, transformers) happen inside the commands, so ``lmm-apa --help`` and
``lmm-apa data stats`` start fast.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from lmm_apa.prompts.tasks import TASK_NAMES

TASK_HELP = "the task: " + " | ".join(TASK_NAMES)
KEEP_STAR_HELP = ("mdd: keep Speechocean762's * phones (L*) as phones of their own instead of their base phone "
                  "(train with mdd_keep_star: true to match)")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune and run audio-language models for pronunciation assessment.")
data_app = typer.Typer(no_args_is_help=True, help="Read, check and synthesise corpora.")
app.add_typer(data_app, name="data")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _task_with_star(task: str, keep_star: bool):
    """``task`` by name, or with ``keep_star`` the mdd task in the *-keeping convention; ValueError
    for a task that transcribes no phones."""
    from lmm_apa.prompts.tasks import TranscriptTask, get_task

    the_task = get_task(task, keep_star=keep_star)
    if keep_star and not isinstance(the_task, TranscriptTask):
        raise ValueError(f"--keep-star applies to the mdd task only, not {task!r}")
    return the_task if keep_star else task


@contextmanager
def _plain_warnings():
    """The package's own warnings (e.g. an adapter not trained on the asked task) as one
    ``warning: ...`` line on stderr; other libraries' warnings as Python prints them."""
    from lmm_apa.models.loading import UntrainedTaskWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UntrainedTaskWarning):
            typer.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@data_app.command("stats")
def data_stats(
    source: Path = typer.Argument(..., help="SO762 tree, HF save_to_disk folder, parquet file/folder, or JSONL manifest"),
    split: Optional[str] = typer.Option(None, "--split", help="train / test (SO762 trees and HF dataset dicts)"),
) -> None:
    """Print one JSON object: utterances, labelled, mispronunciation labels, failed (id + reason each), hours."""
    from lmm_apa.data.stats import corpus_stats

    try:
        stats = corpus_stats(source, split=split)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(stats, indent=2))


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="output folder (SO762 layout with resource/scores.json)"),
    utterances: int = typer.Option(300, "--utterances", "-n", min=1),
    seed: int = typer.Option(0, "--seed"),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0.0, max=0.9),
) -> None:
    """Write the synthetic SO762-like corpus whose scores follow known rules; progress on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lmm_apa.console import stderr_console
    from lmm_apa.data.synth import write_synthetic_corpus

    with Progress(TextColumn("[bold]synth[/] recordings"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr_console()) as bar:
        job = bar.add_task("synth", total=utterances)
        summary = write_synthetic_corpus(out, n_utterances=utterances, seed=seed, test_fraction=test_fraction,
                                         progress=lambda n: bar.update(job, completed=n))
    typer.echo(json.dumps(summary, indent=2))


@app.command("tiny-model")
def tiny_model(
    out: Path = typer.Argument(..., help="output folder, loadable with from_pretrained"),
    arch: str = typer.Option(..., "--arch", help="qwen2-audio | phi4-mm"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Save a tiny random model of the exact architecture, with its processor and a local tokenizer."""
    from lmm_apa.models.tiny import save_tiny_model

    try:
        path = save_tiny_model(out, arch=arch, seed=seed)
    except ValueError as e:
        _fail(str(e))
    typer.echo(str(path))


@app.command("train")
def train(
    config: str = typer.Argument(..., help="YAML config path, or the name of a shipped config (see lmm_apa/configs)"),
    set_: List[str] = typer.Option([], "--set", help="override a config key: key=value (dotted keys allowed)"),
) -> None:
    """Fine-tune (SFT, SimPO+CE, DPO; LoRA, Unfreeze, QLoRA) as the config says."""
    from lmm_apa.train.run import train_from_config

    try:
        result = train_from_config(config, overrides=set_)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command("predict")
def predict(
    source: Path = typer.Argument(..., help="corpus to assess (any format `data stats` reads)"),
    model: Optional[str] = typer.Option(None, "--model", help="hub id or local path of the backbone (default: the base the adapter records)"),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="trained adapter folder (omit for zero-shot)"),
    task: str = typer.Option("full", "--task", help=TASK_HELP),
    out: Path = typer.Option(..., "--out", help="predictions JSONL (resumed if it exists)"),
    decoding: str = typer.Option("constrained", "--decoding", help="constrained (every answer parses: the score template, or mdd's transcript grammar) | free"),
    split: Optional[str] = typer.Option(None, "--split"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", help="assess only the first N utterances"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu / cuda (default: cuda when available)"),
    backend: str = typer.Option("hf", "--backend", help="hf | vllm"),
    lookahead: Optional[int] = typer.Option(
        None, "--lookahead", min=0,
        help="constrained decoding: speculative score slots per forward (default: fitted to the device and batch size, see default_lookahead); results are identical"),
    keep_star: bool = typer.Option(False, "--keep-star", help=KEEP_STAR_HELP),
) -> None:
    """Batch assessment: one JSON line per utterance, errors recorded per line."""
    from lmm_apa.infer.predict import predict_corpus

    try:
        the_task = _task_with_star(task, keep_star)
        with _plain_warnings():
            summary = predict_corpus(
                source, model=model, adapter=adapter, task=the_task, out=out, decoding=decoding, split=split,
                batch_size=batch_size, limit=limit, device=device, backend=backend, lookahead=lookahead,
            )
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(summary, indent=2))


@app.command("evaluate")
def evaluate(
    preds: Path = typer.Argument(..., help="predictions JSONL"),
    reference: Path = typer.Option(..., "--reference", help="labelled corpus the predictions are scored against"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for metrics.json, report.md and plots"),
    split: Optional[str] = typer.Option(None, "--split"),
    loss_plot: Optional[Path] = typer.Option(None, "--loss-plot", help="a training run's loss.png, linked from report.md"),
    keep_star: bool = typer.Option(False, "--keep-star", help=KEEP_STAR_HELP),
) -> None:
    """metrics.json + paper-style tables + plots."""
    from lmm_apa.evaluate.run import evaluate_predictions

    try:
        tasks = {"mdd": _task_with_star("mdd", True)} if keep_star else None
        metrics = evaluate_predictions(preds, reference, out=out, split=split, loss_plot=loss_plot, tasks=tasks)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(metrics, indent=2))


@app.command("assess")
def assess(
    audio: Path = typer.Argument(..., help="one recording (WAV/FLAC)"),
    text: str = typer.Option(..., "--text", help="the reference text the learner read"),
    model: Optional[str] = typer.Option(None, "--model", help="hub id or local path (default: Qwen/Qwen2-Audio-7B-Instruct)"),
    adapter: Optional[str] = typer.Option(None, "--adapter"),
    task: str = typer.Option("full", "--task", help=TASK_HELP),
    decoding: str = typer.Option("constrained", "--decoding", help="constrained | free"),
    format: str = typer.Option("native", "--format", help="native | azure"),
    phones: Optional[str] = typer.Option(None, "--phones", help="explicit canonical phones, words separated by ' - '"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Assess one recording; JSON on stdout."""
    from lmm_apa.infer.assess import assess_recording

    try:
        with _plain_warnings():
            result = assess_recording(
                audio, text=text, model=model, adapter=adapter, task=task, decoding=decoding,
                output_format=format, phones=phones, device=device,
            )
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(result, indent=2))


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    model: Optional[str] = typer.Option(None, "--model"),
    adapter: Optional[str] = typer.Option(None, "--adapter"),
    task: str = typer.Option("full", "--task", help=TASK_HELP),
    device: Optional[str] = typer.Option(None, "--device"),
    queue_size: int = typer.Option(32, "--queue-size", min=1, help="requests waiting for the model; more get 503 + Retry-After"),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="requests decoded together (1: no batching; lower it if a batch runs out of GPU memory)"),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="seconds before a request gets 504"),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="required on /assess (or env LMM_APA_API_KEY)"),
    allowed_hosts: Optional[List[str]] = typer.Option(None, "--allowed-hosts", help="Host names to answer (default: loopback)"),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="web origins allowed to call the API"),
    docs: bool = typer.Option(False, "--docs/--no-docs", help="/docs (Swagger UI from a CDN: needs internet)"),
) -> None:
    """HTTP API + learner page (loopback only unless --host and --allowed-hosts say otherwise)."""
    from lmm_apa.serve.app import LOOPBACK_HOSTS, ServeOptions, listed, resolve_api_key, run_server

    options = ServeOptions(queue_size=queue_size, max_batch=max_batch, request_timeout_s=timeout,
                           api_key=resolve_api_key(api_key), allowed_hosts=listed(allowed_hosts) or LOOPBACK_HOSTS,
                           cors_origins=listed(cors_origin), docs=docs)
    run_server(host=host, port=port, model=model, adapter=adapter, task=task, device=device, options=options)


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out"),
    seed: int = typer.Option(0, "--seed", help="seeds the corpus, the tiny model and training (0 to 2**32 - 1)"),
    model: Optional[str] = typer.Option(None, "--model", help="a real backbone (GPU); default: the tiny Qwen2-Audio-architecture model"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="a real labelled corpus instead of the synthetic one"),
    utterances: Optional[int] = typer.Option(None, "--utterances", help="size of the synthetic corpus (default 1000: 800 train / 200 held-out; below 400 the tiny model may not learn)"),
) -> None:
    """The main job: synthetic corpus -> fine-tune -> predict -> evaluate -> report; the last line says whether it learned."""
    from lmm_apa.demo import DEMO_UTTERANCES, run_demo

    try:
        result = run_demo(out, seed=seed, model=model, corpus=corpus, utterances=DEMO_UTTERANCES if utterances is None else utterances)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(result, indent=2))
    typer.echo(result["verdict"], err=True)  # last: the plain verdict, after the machine-readable summary


@app.command("reproduce")
def reproduce(
    table: str = typer.Argument(..., help="wang2025-table1 | wang2025-table2 | wang2025-table3 | ahn2025-table3"),
    model: Optional[str] = typer.Option(None, "--model", help="backbone id or path (default: the paper's: Qwen2-Audio-7B-Instruct / Phi-4-multimodal-instruct)"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="labelled corpus with train and test splits (Speechocean762)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run folder (default reproduce/TABLE, reproduce/TABLE-smoke with --smoke); rerun to resume"),
    smoke: bool = typer.Option(False, "--smoke", help="tiny model + synthetic corpus, a few steps per run: the pipeline in minutes on a CPU"),
    private: Optional[Path] = typer.Option(None, "--private", help="Wang et al. 2025's private corpus (Table 2 'FT + Private')"),
    decoding: Optional[str] = typer.Option(None, "--decoding", help="free (the papers'; default) | constrained (default with --smoke)"),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="utterances decoded together"),
    set_: List[str] = typer.Option([], "--set", help="override a key of every training config: key=value"),
) -> None:
    """Run every row of a paper table (train, predict, evaluate) and write table.md / table.json
    with the published numbers, ours and the differences. Finished rows are skipped on a rerun."""
    from lmm_apa.console import stderr_console
    from lmm_apa.reproduce import reproduce_table
    from lmm_apa.reproduce.runner import Interrupted, default_out

    console = stderr_console()
    try:
        result = reproduce_table(table, model=model, corpus=corpus, out=out, smoke=smoke, private=private,
                                 decoding=decoding, batch_size=batch_size, overrides=set_,
                                 log=lambda s: console.print(s, markup=False, highlight=False))  # "[failed] ...": text, not markup
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    except Interrupted as e:
        _fail(str(e), code=130)
    failed = [r["label"] + (f" {r.get('epoch')}" if r.get("epoch") else "") for r in result["rows"] if r.get("status") == "failed"]
    out_dir = Path(out) if out is not None else default_out(table, smoke)
    typer.echo(json.dumps({"table": table, "markdown": str(out_dir / "table.md"), "json": str(out_dir / "table.json"),
                           "failed_rows": failed}, indent=2))
    if failed:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
