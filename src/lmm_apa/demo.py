"""``lmm-apa demo``: the whole pipeline once, end to end, on whatever this machine can run.

synthetic corpus (``lmm_apa.data.synth``) -> tiny random Qwen2-Audio-architecture backbone
(``save_tiny_model``) -> fine-tune (``train_from_config`` with the shipped ``tiny_demo`` config) ->
assess the held-out split with template-constrained + expected-score decoding (``predict_corpus``)
-> metrics, report and plots (``evaluate_predictions``) -> one report folder.

Why a tiny random model on synthetic speech: no weights and no labelled speech can be downloaded
here, yet a user must be able to see in minutes, on a laptop CPU, that every stage works and that
the model really learns from the audio (the synthetic scores are a known function of the audio, so a
broken stage shows up as a low correlation). The figures check the pipeline; they say nothing about
real learners' speech. With ``model`` (a real backbone id or path) and ``corpus`` (a real labelled
corpus) the same function runs the paper's configuration (``wang2025_ft``) for GPU users.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEMO_UTTERANCES = 600  # 480 train / 120 held-out: enough held-out readings for a stable correlation
TINY_CONFIG = "tiny_demo"
TINY_AUDIO_SECONDS = 6  # the synthetic corpus never exceeds 6 s (lmm_apa.data.synth.MAX_SECONDS)
REAL_CONFIG = "wang2025_ft"

REPORT_HEADER = """# LMM-APA demo report

**What these figures mean.** {what}

- corpus: `{corpus}` (held-out split `test`, {n_test} utterances)
- backbone: `{model}`; fine-tuned with `{config}` ({method}, {steps} steps, {train_s:.0f} s)
- decoding: template-constrained; "expected" rows are expected-score decoding (the probability-weighted
  mean over each slot's candidate scores), the headline figure
- held-out sentence accuracy PCC: **{pcc_expected}** (expected score), {pcc_argmax} (argmax score)
- wall time: {wall_s:.0f} s

"""

WHAT_TINY = (
    "A tiny, randomly initialised model of the Qwen2-Audio architecture was fine-tuned on a synthetic "
    "corpus whose scores are a known function of its audio (see `lmm_apa/data/synth.py`). A high "
    "correlation shows that audio, prompts, training, decoding and evaluation work together and that the "
    "model learns from the sound; it is a check of the pipeline, **not** a measure of pronunciation "
    "assessment on real speech. For that, run the same command with `--model Qwen/Qwen2-Audio-7B-Instruct "
    "--corpus path/to/speechocean762` on a GPU."
)
WHAT_REAL = (
    "The backbone was fine-tuned on the given corpus' train split with seed 001's configuration and is "
    "scored on its test split; compare with SPEC §4's reference table."
)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _pcc(metrics: dict, section: str | None = None):
    node = metrics.get(section, {}) if section else metrics
    return (((node or {}).get("sentence") or {}).get("accuracy") or {}).get("pcc")


def run_demo(out: str | Path = "demo-out", seed: int = 0, model: str | None = None, corpus: str | Path | None = None,
             utterances: int = DEMO_UTTERANCES, overrides: list[str] | None = None) -> dict:
    """Run the demo into ``out``; returns a summary (paths, headline PCC, timings).

    ``model``/``corpus`` switch from the tiny model / synthetic corpus to a real backbone and a real
    labelled corpus (SO762 layout or any format ``load_corpus`` reads, with train and test splits).
    ``overrides`` are extra ``--set`` items for the training config (tests shorten runs with them)."""
    from lmm_apa.evaluate.run import evaluate_predictions
    from lmm_apa.infer.predict import predict_corpus
    from lmm_apa.train.config import load_config
    from lmm_apa.train.run import train_from_config

    console = _console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings = {}

    if corpus is None:
        from lmm_apa.data.synth import write_synthetic_corpus

        corpus = out / "synthetic-corpus"
        with console.status(f"writing the synthetic corpus ({utterances} utterances, seed {seed})"):
            summary = write_synthetic_corpus(corpus, n_utterances=utterances, seed=seed)
        console.print(f"[green]corpus[/] {corpus}: {summary['train']} train / {summary['test']} held-out, "
                      f"{summary['hours'] * 60:.1f} min of audio ({summary['elapsed_s']} s)")
    corpus = Path(corpus)
    if not corpus.exists():
        raise FileNotFoundError(f"demo corpus {corpus} does not exist")
    timings["corpus_s"] = round(time.perf_counter() - t0, 1)

    if model is None:
        from lmm_apa.models.tiny import save_tiny_model

        with console.status("building the tiny Qwen2-Audio-architecture model"):
            model = str(save_tiny_model(out / "tiny-qwen2-audio", arch="qwen2-audio", seed=seed,
                                        audio_seconds=TINY_AUDIO_SECONDS))
        config, what = TINY_CONFIG, WHAT_TINY
    else:
        config, what = REAL_CONFIG, WHAT_REAL
    train_dir = out / "train"
    sets = [f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", f"output_dir={train_dir}",
            f"seed={seed}", *(overrides or [])]
    cfg = load_config(config, sets)
    task = cfg.tasks[0]
    console.print(f"[green]training[/] {config} ({cfg.method}, task {task}) on {model}")
    t = time.perf_counter()
    train = train_from_config(config, overrides=sets)
    timings["train_s"] = round(time.perf_counter() - t, 1)
    if not train.get("adapter"):
        raise RuntimeError(f"training stopped before the end (see {train_dir}); no adapter to assess")

    preds = out / "predictions.jsonl"
    if preds.exists():
        preds.unlink()  # a fresh demo never mixes in an older run's lines
    t = time.perf_counter()
    with console.status("assessing the held-out split (constrained + expected-score decoding)"):
        pred = predict_corpus(corpus, model=model, adapter=train["adapter"], task=task, out=preds,
                              decoding="constrained", split="test", progress=False)
    timings["predict_s"] = round(time.perf_counter() - t, 1)

    metrics = evaluate_predictions(preds, corpus, out=out, split="test")
    timings["wall_s"] = round(time.perf_counter() - t0, 1)
    pcc_expected, pcc_argmax = _pcc(metrics, "expected"), _pcc(metrics)
    report = out / "report.md"
    body = report.read_text() if report.exists() else ""
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    report.write_text(REPORT_HEADER.format(
        what=what, corpus=corpus, n_test=pred.get("written", metrics.get("n")), model=model, config=config,
        method=cfg.method, steps=train.get("global_step"), train_s=timings["train_s"],
        pcc_expected=fmt(pcc_expected), pcc_argmax=fmt(pcc_argmax), wall_s=timings["wall_s"],
    ) + body)
    result = {
        "out": str(out), "report": str(report), "metrics": str(out / "metrics.json"),
        "predictions": str(preds), "corpus": str(corpus), "model": model, "config": config, "task": task,
        "sentence_accuracy_pcc": {"expected": pcc_expected, "argmax": pcc_argmax},
        "parse_failures": metrics.get("parse_failures"), "timings": timings,
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"[bold green]done[/] in {timings['wall_s']:.0f} s: held-out sentence-accuracy PCC "
                  f"{fmt(pcc_expected)} (expected score), {fmt(pcc_argmax)} (argmax)")
    console.print(f"report: [bold]{report}[/]  (metrics: {out / 'metrics.json'})")
    console.print("[dim]" + ("A tiny model on synthetic speech: this checks the pipeline, not real pronunciation "
                             "assessment." if config == TINY_CONFIG else "") + "[/]")
    return result
