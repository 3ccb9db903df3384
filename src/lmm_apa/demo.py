"""``lmm-apa demo``: the whole pipeline once, end to end, on whatever this machine can run.

synthetic corpus (``lmm_apa.data.synth``) -> tiny random Qwen2-Audio-architecture backbone
(``save_tiny_model``) -> fine-tune (``train_from_config`` with the shipped ``tiny_demo`` config) ->
assess the held-out split with template-constrained + expected-score decoding (``predict_corpus``)
-> the same held-out readings with their audio silenced (the audio control) -> metrics, report and
plots (``evaluate_predictions``) -> a verdict: did it learn? -> one report folder.

Why a tiny random model on synthetic speech: no weights and no labelled speech can be downloaded
here, yet a user must be able to see in minutes, on a laptop CPU, that every stage works and that
the model really learns from the audio (the synthetic scores are a known function of the audio, so a
broken stage shows up as a low correlation, and a model that learned from the sound loses its
correlation when the sound is taken away). The figures check the pipeline; they say nothing about
real learners' speech. With ``model`` (a real backbone id or path) and ``corpus`` (a real labelled
corpus) the same function runs Wang et al. 2025's configuration (``wang2025_ft``) for GPU users.

Recipes (``RECIPES``): ``demo`` is what ``lmm-apa demo`` runs; ``full`` (Wang et al. 2025's
sentence + word + phone answer) and ``phi4-apa`` (the tiny Phi-4-multimodal on Ahn & Nam 2025's
``apa`` task) are the suite's other learning proofs, run the same way (``benchmarks/bench_learning.py
--recipe``). Each names its goals; the demo says plainly when a goal is missed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

DEMO_UTTERANCES = 1000  # 800 train / 200 held-out readings (see tiny_demo.yaml for why not fewer)
TEST_FRACTION = 0.2
MIN_HELD_OUT = 10  # a correlation on fewer held-out readings says nothing
# The smallest synthetic corpus the demo recipe learned from with a margin on every seed tried (with
# the step budget, ``step_budget_sets``: 400 on 3 seeds, min 0.827; 500 on 5; 1000 on 18; 2000 on 2).
# On 300 it reached its goal on 3 seeds but only just (0.801, 0.818 on two); on 200 it missed on both
# seeds tried (seed 0 memorised the 40 reading texts instead of listening; benchmarks/RESULTS.md,
# "corpus sizes"). Measured for the demo recipe only; a miss below it says nothing about the pipeline.
MIN_LEARNING_UTTERANCES = 400
SEED_MAX = 2**32 - 1  # numpy, torch and transformers' set_seed all take seeds in [0, 2**32 - 1]
TINY_CONFIG = "tiny_demo"
TINY_AUDIO_SECONDS = 6  # the synthetic corpus never exceeds 6 s (lmm_apa.data.synth.MAX_SECONDS)
REAL_CONFIG = "wang2025_ft"
SILENCE_GOAL = 0.2  # with the audio silenced, a model that learned from the sound falls below this


@dataclass(frozen=True)
class Recipe:
    """One learning run on the tiny model: which architecture, which ``--set`` items on top of
    ``tiny_demo``, and the held-out accuracy PCC (expected score) each level must reach."""

    name: str
    arch: str
    overrides: tuple[str, ...] = ()
    goals: dict = field(default_factory=lambda: {"sentence": 0.8})


RECIPES = {
    "demo": Recipe("demo", "qwen2-audio"),
    # Wang et al. 2025's comprehensive task: ~150-token answers need more passes than one score.
    # 6 epochs at lr 2e-3 (600 steps) instead of 8 at 1e-3 (800): on seeds 0-2 sentence 0.01-0.02
    # lower, word and phone the same or better on average, for 3/4 of the CPU (2026-12-02,
    # benchmarks/RESULTS.md). Seeds 0-4: sentence 0.929 / 0.887 / 0.877 / 0.906 / 0.890,
    # word 0.764 / 0.681 / 0.608 / 0.772 / 0.693, phone 0.562 / 0.550 / 0.427 / 0.600 / 0.445 (8 epochs
    # at 1e-3, seeds 0-2: sentence 0.936 / 0.893 / 0.896, word 0.746 / 0.691 / 0.597, phone 0.524 /
    # 0.527 / 0.441). Not shorter: 5 epochs at 2e-3, or at 3e-3, lost the sentence score on seed 0
    # (0.536, 0.605; tried on that seed only). The goals are the floors this recipe clears on the
    # suite's seed, short of the 0.6 phone PCC it is meant to reach: the tiny model hears how much of
    # a reading is wrong, not where (its PCC within readings is -0.07 to 0.08), so it scores a
    # reading's phones alike, and giving each phone its reading's true mean would reach only 0.623 /
    # 0.617 / 0.496 / 0.664 / 0.597 on seeds 0-4 (bench_learning's localisation columns): without
    # localising, the goal needs an almost exact reading-level score on most seeds and is out of
    # reach on seeds 2 and 4. A pretrained start (encoder CTC on the synthetic phones, then `mdd`
    # transcription; benchmarks/bench_localisation.py, 2026-12-03) did not make it localise either.
    "full": Recipe("full", "qwen2-audio", ("tasks=[full]", "epochs=6", "lr=2e-3"),
                   {"sentence": 0.8, "word": 0.65, "phone": 0.5}),
    # Ahn & Nam 2025's apa task: every aspect in the answer and a rubric prompt ~5x the sentence
    # prompts, so the accuracy cue needs more passes than the demo's single score. Batch 16, not the
    # demo's 8: on the demo corpus (seed 0, 6 epochs, the same CPU time) batch 4 reached PCC 0.399,
    # 8 0.748 with a constant argmax, 16 0.825, 32 0.325; and 8 epochs, not 6: batch 16 on seeds 0, 1,
    # 2 reached 0.825, 0.793, 0.786 after 6 epochs and 0.884, 0.833, 0.840 after 8, the argmax never
    # constant (2026-12-02, benchmarks/RESULTS.md); re-measured with the trainer's mask-free batches:
    # 0.884, 0.832, 0.840; seeds 3 and 4 (2026-12-03): 0.752 (a miss) and 0.882, so >= 0.8 on 4 of 5
    # seeds. Unlike `full`, it does not take a higher rate for fewer epochs: 6 epochs at lr 2e-3 /
    # 1.5e-3 reached 0.825 / 0.747 on seed 0. With the trainer's last layer run at the answer positions
    # only (2026-12-03): 0.884, 0.832, 0.840, 0.757, 0.882 on seeds 0-4 (`full`: sentence 0.930 /
    # 0.885 / 0.883 / 0.898 / 0.894, word 0.729 / 0.716 / 0.556 / 0.772 / 0.681, phone 0.555 / 0.525 /
    # 0.414 / 0.609 / 0.453), the same pass / miss pattern, in ~3/4 of the training time.
    "phi4-apa": Recipe("phi4-apa", "phi4-mm", ("tasks=[apa]", "epochs=8", "batch_size=16"), {"sentence": 0.8}),
}

REPORT_HEADER = """# LMM-APA demo report

**Verdict.** {verdict}

**What these figures mean.** {what}

- corpus: `{corpus}` (held-out split `test`, {n_test} utterances)
- backbone: `{model}`; fine-tuned with `{config}` ({method}, {steps} steps, {train_s:.0f} s)
- decoding: template-constrained; "expected" rows are expected-score decoding (the probability-weighted
  mean over each slot's candidate scores), the headline figure
- held-out sentence accuracy PCC: **{pcc_expected}** (expected score), {pcc_argmax} (argmax score){levels}
- audio control (the same held-out readings, audio silenced): sentence accuracy PCC {pcc_silenced}
- wall time: {wall_s:.0f} s

"""

WHAT_TINY = (
    "A tiny, randomly initialised model of the {arch} architecture was fine-tuned on a synthetic "
    "corpus whose scores are a known function of its audio (see `lmm_apa/data/synth.py`). A high "
    "correlation shows that audio, prompts, training, decoding and evaluation work together and that the "
    "model learns from the sound; it is a check of the pipeline, **not** a measure of pronunciation "
    "assessment on real speech. For that, run the same command with `--model Qwen/Qwen2-Audio-7B-Instruct "
    "--corpus path/to/speechocean762` on a GPU."
)
WHAT_REAL = (
    "The backbone was fine-tuned on the given corpus' train split with Wang et al. 2025's configuration "
    "and is scored on its test split; compare with the paper's Speechocean762 table."
)

NOT_LEARNED_ADVICE = (
    "What it means: the model did not learn to hear the scores in the audio within this run, so these "
    "figures say nothing about the pipeline's quality. Constant predictions mean it fell back to the most "
    "common score (the label prior). What to try: run again with another --seed (the sweep in "
    "benchmarks/bench_learning.py shows how often a seed misses); if every seed misses, something in the "
    "pipeline is broken -- run `make test`, whose learning proofs locate it."
)
SMALL_CORPUS_ADVICE = (
    "What it means: {n} synthetic readings are too few for the tiny model to learn from reliably (measured "
    "for the demo recipe: from {min_n} up it learned on every seed tried; on 300 only just, and on 200 it "
    "missed on both seeds tried), so this says nothing about the pipeline. What to try: --utterances "
    "{min_n} or more (default {default})."
)
CONTROL_FAILED_ADVICE = (
    "the predictions kept their correlation with the audio silenced, so the model scored something other "
    "than the sound (the text or the label order) -- a broken pipeline; run `make test`."
)


def _console():
    from lmm_apa.console import stderr_console

    return stderr_console()


def level_pcc(metrics: dict | None, level: str = "sentence", expected: bool = True):
    """The held-out accuracy PCC of ``level`` in a metrics.json (expected-score section by default);
    None where undefined or absent."""
    node = (metrics or {}).get("expected", {}) if expected else (metrics or {})
    return (((node or {}).get(level) or {}).get("accuracy") or {}).get("pcc")


def _argmax_constant(metrics: dict, level: str = "sentence") -> str | None:
    """The evaluator's reason when the argmax predictions of ``level`` were one constant."""
    reason = (((metrics.get(level) or {}).get("accuracy")) or {}).get("reason") or ""
    return reason if reason.startswith("predicted scores are constant") else None


def check_demo_args(seed: int, utterances: int | None = None, test_fraction: float = TEST_FRACTION) -> None:
    """Refuse, naming the option, what would fail later or give a meaningless figure: a seed numpy
    and torch do not take, a synthetic corpus too small to hold a train and a held-out split."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"--seed must be an integer from 0 to {SEED_MAX} (the numpy and torch seed range), got {seed!r}")
    if utterances is None:
        return
    from lmm_apa.data.synth import split_sizes

    if min(split_sizes(utterances, test_fraction, seed)) < MIN_HELD_OUT:
        need = next(n for n in range(5, 100_000, 5) if min(split_sizes(n, test_fraction, seed)) >= MIN_HELD_OUT)
        raise ValueError(
            f"--utterances {utterances} is too small to hold a train and a test split of at least {MIN_HELD_OUT} "
            f"readings each (a correlation on fewer says nothing); use --utterances {need} or more "
            f"(default {DEMO_UTTERANCES})"
        )


def verdict(metrics: dict, silenced: dict | None, goals: dict, utterances: int | None = None) -> dict:
    """Did the run learn? ``{"learned": bool, "problems": [...], "line": one plain sentence}``.
    Learned = every goal level's expected-score PCC reaches its goal, the argmax predictions are
    not one constant, and (when the control ran) the silenced audio's PCC collapses. ``utterances``:
    the synthetic corpus' size, when the demo wrote one; below ``MIN_LEARNING_UTTERANCES`` a miss is
    put down to the corpus size (what to try: a larger one), not to the seed or the pipeline."""
    problems = []
    for level, goal in goals.items():
        value = level_pcc(metrics, level)
        if value is None or value < goal:
            shown = "undefined" if value is None else f"{value:.3f}"
            problems.append(f"held-out {level}-accuracy PCC {shown} is below its goal {goal:g}")
    constant = _argmax_constant(metrics)
    if constant:
        problems.append(f"the argmax {constant}")
    control = level_pcc(silenced) if silenced is not None else None
    control_failed = control is not None and control >= SILENCE_GOAL
    if control_failed:
        problems.append(f"with the audio silenced the PCC stayed at {control:.3f} (goal < {SILENCE_GOAL:g})")
    sent = level_pcc(metrics)
    figure = "n/a" if sent is None else f"{sent:.3f}"
    if not problems:
        goal = f" (goal >= {goals['sentence']:g})" if "sentence" in goals else ""
        line = (f"LEARNED: held-out sentence-accuracy PCC {figure}{goal}; "
                f"with the audio silenced {'n/a' if control is None else f'{control:.3f}'}.")
    else:
        advice = CONTROL_FAILED_ADVICE if control_failed else NOT_LEARNED_ADVICE
        if utterances is not None and utterances < MIN_LEARNING_UTTERANCES:
            advice = SMALL_CORPUS_ADVICE.format(n=utterances, min_n=MIN_LEARNING_UTTERANCES, default=DEMO_UTTERANCES)
        line = f"DID NOT LEARN: {'; '.join(problems)}. {advice}"
    return {"learned": not problems, "problems": problems, "line": line, "silenced_pcc": control}


# --------------------------------------------------------------------------- stages


def _make_corpus(out: Path, seed: int, utterances: int, test_fraction: float, console, tiny_model: bool = True) -> Path:
    from lmm_apa.data.synth import write_synthetic_corpus

    if tiny_model and utterances < MIN_LEARNING_UTTERANCES:
        console.print(f"[yellow]note[/] --utterances {utterances}: below {MIN_LEARNING_UTTERANCES} the tiny model "
                      "may not learn (too few readings); the verdict will say whether it did")
    corpus = out / "synthetic-corpus"
    with console.status(f"writing the synthetic corpus ({utterances} utterances, seed {seed})"):
        summary = write_synthetic_corpus(corpus, n_utterances=utterances, seed=seed, test_fraction=test_fraction)
    console.print(f"[green]corpus[/] {corpus}: {summary['train']} train / {summary['test']} held-out, "
                  f"{summary['hours'] * 60:.1f} min of audio ({summary['elapsed_s']} s)")
    return corpus


def step_budget_sets(config: str, recipe_sets: list[str], n_train: int) -> list[str]:
    """``--set`` items that keep a recipe's number of optimizer steps on a synthetic corpus with fewer
    training readings than the demo corpus it was tuned on (``DEMO_UTTERANCES``): more epochs, the
    same steps ([] when the corpus is not smaller).

    Why: what a random tiny model needs is steps -- after learning the answer's fixed tokens it sits at
    the label prior before it starts to hear (see ``tiny_demo.yaml``). On 500 utterances the demo
    recipe's 5 epochs are 250 steps, which missed one seed in five (constant predictions); 10 epochs,
    the same 500 steps, learned on all five. On 400 (200 steps) one seed in three missed; 13 epochs
    learned on all three (benchmarks/RESULTS.md, "corpus sizes"; measured for the demo recipe, applied
    to every recipe alike)."""
    from lmm_apa.data.synth import split_sizes
    from lmm_apa.train.config import load_config

    cfg = load_config(config, recipe_sets)
    per_step = cfg.batch_size * cfg.grad_accum
    budget = cfg.epochs * math.ceil(split_sizes(DEMO_UTTERANCES, TEST_FRACTION)[0] / per_step)
    epochs = math.ceil(budget / math.ceil(n_train / per_step))
    return [f"epochs={epochs}"] if epochs > cfg.epochs else []


def sets_schedule(sets: list[str]) -> bool:
    """Whether ``--set`` items choose the training length themselves (``epochs`` or ``max_steps``)."""
    return any(item.split("=", 1)[0].strip() in ("epochs", "max_steps") for item in sets)


def _keep_step_budget(config: str, sets: list[str], overrides: list[str], utterances: int, test_fraction: float,
                      seed: int, console) -> list[str]:
    """``step_budget_sets`` for the synthetic corpus the demo wrote (with the caller's ``overrides``,
    which do not choose the training length), said on the console when it applies."""
    from lmm_apa.data.synth import split_sizes

    n_train = split_sizes(utterances, test_fraction, seed)[0]
    extra = step_budget_sets(config, [*sets, *overrides], n_train)
    if extra:
        console.print(f"[green]schedule[/] {extra[0].split('=')[1]} epochs on {n_train} training readings: the "
                      f"steps it takes on the {DEMO_UTTERANCES}-utterance corpus it was tuned on")
    return extra


def _make_tiny_model(out: Path, seed: int, arch: str, console) -> str:
    from lmm_apa.models.tiny import save_tiny_model

    with console.status(f"building the tiny {arch}-architecture model"):
        return str(save_tiny_model(out / f"tiny-{arch}", arch=arch, seed=seed,
                                   audio_seconds=TINY_AUDIO_SECONDS if arch == "qwen2-audio" else None))


def _assess(corpus: Path, model: str, adapter: str, task: str, preds: Path, out: Path | None) -> tuple[dict, dict]:
    """Predict the held-out split into ``preds`` (fresh) and evaluate it (report + plots in ``out``)."""
    from lmm_apa.evaluate.run import evaluate_predictions
    from lmm_apa.infer.predict import predict_corpus

    if preds.exists():
        preds.unlink()  # a fresh demo never mixes in an older run's lines
    pred = predict_corpus(corpus, model=model, adapter=adapter, task=task, out=preds,
                          decoding="constrained", split="test", progress=False)
    loss_plot = None if out is None else out / "train" / "loss.png"  # the training run's curve, linked from the report
    return pred, evaluate_predictions(preds, corpus, out=out, split="test", loss_plot=loss_plot)


def _silence_control(corpus: Path, model: str, adapter: str, task: str, out: Path) -> dict | None:
    """The trained model on its own held-out readings with the audio silenced (metrics), or None
    when the corpus is not in the SO762 layout the silenced copy is made from."""
    from lmm_apa.data.synth import silenced_split

    if not (corpus / "test" / "wav.scp").is_file():
        return None
    silent = silenced_split(corpus, out / "silenced-test", split="test")
    return _assess(silent, model, adapter, task, out / "predictions-silenced.jsonl", None)[1]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _write_report(out: Path, metrics: dict, silenced: dict | None, judged: dict, info: dict) -> Path:
    """``report.md``: the demo's header (verdict first) above the evaluation's own report."""
    report = out / "report.md"
    body = report.read_text() if report.exists() else ""
    levels = "".join(f"; {lv} {_fmt(level_pcc(metrics, lv))}" for lv in ("word", "phone")
                     if level_pcc(metrics, lv) is not None)
    report.write_text(REPORT_HEADER.format(
        verdict=judged["line"], pcc_expected=_fmt(level_pcc(metrics)), pcc_argmax=_fmt(level_pcc(metrics, expected=False)),
        levels=f" (expected score, other levels{levels})" if levels else "",
        pcc_silenced="not run" if silenced is None else _fmt(level_pcc(silenced)), **info,
    ) + body)
    return report


def _train(config: str, sets: list[str], out: Path, console):
    """Fine-tune as ``config`` + ``sets`` say; (resolved config, training summary with its adapter)."""
    from lmm_apa.train.config import load_config
    from lmm_apa.train.run import train_from_config

    cfg = load_config(config, sets)
    console.print(f"[green]training[/] {config} ({cfg.method}, task {cfg.tasks[0]}) on {cfg.model}")
    train = train_from_config(config, overrides=sets)
    if not train.get("adapter"):
        raise RuntimeError(f"training stopped before the end (see {out / 'train'}); no adapter to assess")
    return cfg, train


def _result(out: Path, report: Path, metrics: dict, silenced: dict | None, judged: dict, timings: dict,
            run: dict) -> dict:
    """The demo's summary (returned, and written to ``demo_summary.json``)."""
    levels = ("sentence", "word", "phone")
    return {
        "out": str(out), "report": str(report), "metrics": str(out / "metrics.json"),
        "predictions": str(out / "predictions.jsonl"), **run,
        "sentence_accuracy_pcc": {"expected": level_pcc(metrics), "argmax": level_pcc(metrics, expected=False),
                                  "silenced": judged["silenced_pcc"]},
        "accuracy_pcc": {lv: level_pcc(metrics, lv) for lv in levels},
        "silenced_accuracy_pcc": {lv: level_pcc(silenced, lv) for lv in levels} if silenced else None,
        "argmax_constant": _argmax_constant(metrics), "learned": judged["learned"], "verdict": judged["line"],
        "parse_failures": metrics.get("parse_failures"), "n_test": metrics.get("n"), "timings": timings,
    }


def run_demo(out: str | Path = "demo-out", seed: int = 0, model: str | None = None, corpus: str | Path | None = None,
             utterances: int = DEMO_UTTERANCES, overrides: list[str] | None = None, recipe: str = "demo",
             test_fraction: float = TEST_FRACTION, silence_control: bool = True) -> dict:
    """Run the demo into ``out``; returns a summary (paths, headline PCCs, the verdict, timings).

    ``model``/``corpus`` switch from the tiny model / synthetic corpus to a real backbone and a real
    labelled corpus (SO762 layout or any format ``load_corpus`` reads, with train and test splits).
    ``recipe``: one of ``RECIPES`` (the tiny model's architecture, task and goals). ``overrides`` are
    extra ``--set`` items for the training config (tests shorten runs with them)."""
    the_recipe = RECIPES.get(recipe)
    if the_recipe is None:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    check_demo_args(seed, utterances if corpus is None else None, test_fraction)
    console, out, t0, timings = _console(), Path(out), time.perf_counter(), {}
    out.mkdir(parents=True, exist_ok=True)
    synthetic = corpus is None
    if synthetic:
        corpus = _make_corpus(out, seed, utterances, test_fraction, console, tiny_model=model is None)
    corpus = Path(corpus)
    if not corpus.exists():
        raise FileNotFoundError(f"--corpus {corpus} does not exist")
    timings["corpus_s"] = round(time.perf_counter() - t0, 1)
    tiny = model is None
    model, config = (_make_tiny_model(out, seed, the_recipe.arch, console), TINY_CONFIG) if tiny else (model, REAL_CONFIG)
    sets = [f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", f"output_dir={out / 'train'}",
            f"seed={seed}", "resume=false", *(the_recipe.overrides if tiny else ())]
    overrides = list(overrides or [])
    step_budget = tiny and synthetic and not sets_schedule(overrides)  # a caller's own schedule stands
    if step_budget:
        sets += _keep_step_budget(config, sets, overrides, utterances, test_fraction, seed, console)
    sets += overrides  # the caller's last: they win
    t = time.perf_counter()
    cfg, train = _train(config, sets, out, console)
    task = cfg.tasks[0]
    timings["train_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    with console.status("assessing the held-out split (constrained + expected-score decoding)"):
        pred, metrics = _assess(corpus, model, train["adapter"], task, out / "predictions.jsonl", out)
    timings["predict_s"] = round(time.perf_counter() - t, 1)
    silenced = None
    if silence_control:
        t = time.perf_counter()
        with console.status("the audio control: the same held-out readings with the audio silenced"):
            silenced = _silence_control(corpus, model, train["adapter"], task, out)
        timings["control_s"] = round(time.perf_counter() - t, 1)
    timings["wall_s"] = round(time.perf_counter() - t0, 1)
    judged = verdict(metrics, silenced, the_recipe.goals if tiny else {},  # a real corpus: no goal of ours
                     utterances=utterances if step_budget else None)
    report = _write_report(out, metrics, silenced, judged, dict(
        what=WHAT_TINY.format(arch=the_recipe.arch) if tiny else WHAT_REAL, corpus=corpus,
        n_test=pred.get("written", metrics.get("n")), model=model, config=config, method=cfg.method,
        steps=train.get("global_step"), train_s=timings["train_s"], wall_s=timings["wall_s"]))
    result = _result(out, report, metrics, silenced, judged, timings, dict(
        corpus=str(corpus), model=model, config=config, recipe=recipe if tiny else None, task=task,
        steps=train.get("global_step")))
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    _print_outcome(console, result, tiny)
    return result


def _print_outcome(console, result: dict, tiny: bool) -> None:
    """The closing lines; the last one is the verdict, in plain words."""
    pccs = result["sentence_accuracy_pcc"]
    console.print(f"[bold]done[/] in {result['timings']['wall_s']:.0f} s: held-out sentence-accuracy PCC "
                  f"{_fmt(pccs['expected'])} (expected score), {_fmt(pccs['argmax'])} (argmax)")
    console.print(f"report: [bold]{result['report']}[/]  (metrics: {result['metrics']})")
    if tiny:
        console.print("[dim]A tiny model on synthetic speech: this checks the pipeline, not real pronunciation "
                      "assessment.[/]")
    from rich.text import Text

    console.print(Text(result["verdict"], style="bold green" if result["learned"] else "bold red"))
