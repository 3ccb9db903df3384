"""Seed sweep of a learning recipe: does the tiny model learn on every seed, not just on one?

Runs ``lmm_apa.demo.run_demo`` (the demo's own code: synthetic corpus, tiny model, training,
constrained + expected-score decoding of the held-out split, the silenced-audio control, verdict)
once per seed, each in its own subprocess (so peaks and thread settings do not mix), and prints per
seed and in summary: held-out sentence-accuracy PCC (expected and argmax score), word and phone PCC
where the recipe's task has them, the silenced-audio control, whether the argmax was one constant,
steps and wall time. Recipes (``lmm_apa.demo.RECIPES``): ``demo`` (what ``lmm-apa demo`` runs),
``full`` (Wang et al. 2025's sentence + word + phone task), ``phi4-apa`` (tiny Phi-4-multimodal,
Ahn & Nam 2025's ``apa`` task).

    python benchmarks/bench_learning.py [--seeds 10] [--first-seed 0] [--recipe demo] [--threads 2]
        [--utterances N] [--set key=value ...] [--work DIR] [--json OUT.jsonl]

Where the task scores words and phones, four more columns (``localisation``) say how much of their
PCC needs hearing where in the reading an error is: ``*_ceiling``, the PCC that knowing each
utterance's true mean score and giving it to all its words (phones) reaches, and ``*_within``, the
model's PCC within utterances (near 0 when it does not tell one word of a reading from another).

Goals (the main job must learn on every seed, not one lucky draw): every seed's expected-score PCC >= the recipe's
goals, median sentence PCC >= 0.85, the argmax never constant, the silenced control < 0.2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCALISATION = ("word_ceiling", "phone_ceiling", "word_within", "phone_within")
COLUMNS = ("seed", "sent_exp", "sent_argmax", "word", "phone", "silenced", "constant", "steps", "wall_s", "learned",
           *LOCALISATION)


def _pcc(labels: list[float], predictions: list[float]) -> float | None:
    """The evaluation's PCC (None when undefined), rounded as the table prints it."""
    from lmm_apa.evaluate.metrics import pcc

    value = pcc(predictions, labels)
    return None if value is None else round(value, 3)


def _level_rows(prediction: dict, words: list[dict]) -> dict:
    """{level: [(label, expected prediction), ...]} of one utterance's words and phones (items
    without a label or a prediction left out)."""
    expected = prediction.get("expected") or {}
    rows = {"word": [], "phone": []}
    for i, word in enumerate(words):
        if word.get("accuracy") is not None and f"word.{i}.accuracy" in expected:
            rows["word"].append((word["accuracy"], expected[f"word.{i}.accuracy"]))
        for j, label in enumerate(word.get("phones-accuracy") or []):
            if label is not None and f"phone.{i}.{j}.accuracy" in expected:
                rows["phone"].append((label * 5, expected[f"phone.{i}.{j}.accuracy"]))  # phones 0-2 -> 0-10
    return rows


def localisation(predictions: Path, corpus: Path) -> dict:
    """How much of the word / phone PCC needs hearing WHERE an error is, on the held-out split.

    ``*_ceiling``: the PCC of a predictor that knows the true mean score of each reading's words
    (phones) and gives it to every one of them: the most a model that hears only HOW MUCH of a
    reading is wrong can reach. ``*_within``: the model's PCC after subtracting each reading's mean
    from labels and predictions; near 0 when it does not tell one word (phone) of a reading from
    another. Both over the same items: readings with at least 2 scored words (phones); the last line
    per id counts, as in the evaluation. Reads the synthetic corpus' ``resource/scores.json``."""
    scores = json.loads((corpus / "resource" / "scores.json").read_text())
    latest = {}
    for line in predictions.read_text().splitlines():
        if line.strip():
            pred = json.loads(line)
            latest[pred["id"]] = pred
    pooled = {lv: {"label": [], "ceiling": [], "dlabel": [], "dpred": []} for lv in ("word", "phone")}
    for uid, pred in latest.items():
        for level, pairs in _level_rows(pred, scores.get(uid, {}).get("words", [])).items():
            if len(pairs) < 2:
                continue
            labels, values = zip(*pairs)
            mean_label, mean_value = sum(labels) / len(labels), sum(values) / len(values)
            p = pooled[level]
            p["label"] += labels
            p["ceiling"] += [mean_label] * len(labels)
            p["dlabel"] += [x - mean_label for x in labels]
            p["dpred"] += [x - mean_value for x in values]
    out = {}
    for level, p in pooled.items():
        out[f"{level}_ceiling"] = _pcc(p["label"], p["ceiling"])
        out[f"{level}_within"] = _pcc(p["dlabel"], p["dpred"])
    return out


def run_one(seed: int, recipe: str, work: Path, utterances: int | None, overrides: list[str], threads: int) -> dict:
    """One seed, in this process: the demo recipe end to end; a flat row of the figures."""
    import torch

    torch.set_num_threads(threads)
    from lmm_apa.demo import DEMO_UTTERANCES, run_demo

    t0 = time.perf_counter()
    r = run_demo(work / f"{recipe}-seed{seed}", seed=seed, recipe=recipe, overrides=overrides,
                 utterances=utterances or DEMO_UTTERANCES)
    pcc = r["sentence_accuracy_pcc"]
    return {"seed": seed, "recipe": recipe, "sent_exp": pcc["expected"], "sent_argmax": pcc["argmax"],
            "word": r["accuracy_pcc"]["word"], "phone": r["accuracy_pcc"]["phone"], "silenced": pcc["silenced"],
            "constant": bool(r["argmax_constant"]), "steps": r["steps"], "n_test": r["n_test"],
            "wall_s": round(time.perf_counter() - t0, 1), "learned": r["learned"], "timings": r["timings"],
            **localisation(Path(r["predictions"]), Path(r["out"]) / "synthetic-corpus")}


def _in_subprocess(seed: int, args) -> dict:
    cmd = [sys.executable, __file__, "--one", str(seed), "--recipe", args.recipe, "--threads", str(args.threads),
           "--work", str(args.work)] + (["--utterances", str(args.utterances)] if args.utterances else [])
    for item in args.set:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        return {"seed": seed, "recipe": args.recipe, "error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


def _cell(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _summary(rows: list[dict], goals: dict) -> dict:
    """Min / median / max of each figure (an undefined PCC counts as 0: nothing learned), how many
    seeds met every goal, and whether the sweep met the sweep goals (module docstring)."""
    ok = [r for r in rows if "error" not in r]
    out = {"seeds": len(rows), "failed_runs": len(rows) - len(ok), "learned": sum(bool(r["learned"]) for r in ok),
           "constant_argmax": sum(bool(r["constant"]) for r in ok)}
    for key in ("sent_exp", "sent_argmax", "word", "phone", "silenced", "wall_s", *LOCALISATION):
        present = [r.get(key) for r in ok]
        if not ok or (key in ("word", "phone", *LOCALISATION) and all(v is None for v in present)):
            continue
        vals = [0.0 if v is None else v for v in present]
        out[key] = {"min": round(min(vals), 3), "median": round(statistics.median(vals), 3), "max": round(max(vals), 3)}
    column = {"sentence": "sent_exp", "word": "word", "phone": "phone"}
    out["goals_met"] = bool(ok) and len(ok) == len(rows) and out["learned"] == len(ok) and all(
        (r.get(column[level]) or 0.0) >= goal for r in ok for level, goal in goals.items()
    ) and out["sent_exp"]["median"] >= 0.85 and not out["constant_argmax"] and out["silenced"]["max"] < 0.2
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--recipe", default="demo", help="demo | full | phi4-apa (lmm_apa.demo.RECIPES)")
    ap.add_argument("--utterances", type=int, default=None, help="synthetic corpus size (default: the demo's)")
    ap.add_argument("--set", action="append", default=[], help="extra training-config override (key=value)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument("--work", type=Path, default=None, help="where the runs are written (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per seed here")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one seed, JSON on stdout
    args = ap.parse_args(argv)
    from lmm_apa.demo import RECIPES

    if args.recipe not in RECIPES:
        ap.error(f"--recipe must be one of {', '.join(RECIPES)}")
    if args.seeds < 1:
        ap.error("--seeds must be >= 1")
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.recipe, args.work, args.utterances, args.set, args.threads)))
        return []
    args.work = args.work or Path(tempfile.mkdtemp(prefix="bench_learning_"))
    print(f"recipe {args.recipe} (goals {RECIPES[args.recipe].goals}), seeds {args.first_seed}.."
          f"{args.first_seed + args.seeds - 1}, work {args.work}", flush=True)
    print(" | ".join(COLUMNS), flush=True)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = _in_subprocess(seed, args)
        rows.append(row)
        print(" | ".join(_cell(row.get(c)) if c != "wall_s" else f"{row.get(c, 0):.0f}" for c in COLUMNS) + (f"  ERROR {row['error']}" if "error" in row else ""),
              flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(json.dumps({"recipe": args.recipe, "set": args.set, "summary": _summary(rows, RECIPES[args.recipe].goals)},
                     indent=2))
    return rows


if __name__ == "__main__":
    main()
