"""`lmm-apa demo` end to end, shortened (few utterances, few steps): every stage runs through the
real code and the report folder has what the README promises; a run too short to learn says so
plainly. That the demo's full-length run learns is the learning proof in test_learning_qwen.py,
which runs the same recipe through the same ``run_demo``. Bad input is refused naming the option."""

from __future__ import annotations

import json

import pytest

from lmm_apa.demo import SEED_MAX, check_demo_args, verdict


def _metrics(pcc: float | None, reason: str | None = None, phone: float | None = None) -> dict:
    """A metrics.json shape with the sentence accuracy (argmax and expected score) set."""
    acc = {"pcc": pcc, **({"reason": reason} if reason else {})}
    exp = {"sentence": {"accuracy": {"pcc": pcc}}}
    if phone is not None:
        exp["phone"] = {"accuracy": {"pcc": phone}}
    return {"sentence": {"accuracy": acc}, "expected": exp}


@pytest.mark.slow
def test_demo_writes_report_and_metrics_and_says_it_did_not_learn(tmp_path):
    from lmm_apa.demo import run_demo

    out = tmp_path / "demo"
    result = run_demo(out, seed=1, utterances=50, overrides=["max_steps=3"])
    metrics = json.loads((out / "metrics.json").read_text())
    report = (out / "report.md").read_text()
    assert result["report"] == str(out / "report.md")
    assert metrics["n"] == result["n_test"] >= 10 and metrics["parse_failures"] == 0  # constrained decoding parses
    assert "sentence" in metrics and "accuracy" in metrics["sentence"]
    assert "not** a measure of pronunciation" in report and "synthetic" in report
    assert (out / "synthetic-corpus/resource/SYNTHETIC.md").is_file()
    assert (out / "train/adapter").is_dir()
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == metrics["n"] and all("expected" in p for p in preds)
    # the audio control ran on the same held-out readings, silenced
    silent = [json.loads(line) for line in (out / "predictions-silenced.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in silent) == sorted(p["id"] for p in preds)
    assert result["silenced_accuracy_pcc"] is not None
    # 3 steps cannot learn: the demo must not present its number as a success
    assert result["learned"] is False and result["verdict"].startswith("DID NOT LEARN")
    assert "DID NOT LEARN" in report.split("**What these figures mean.**")[0]
    assert "--seed" in result["verdict"]  # what to try (the caller cut training short: not put down to the corpus size)


def test_verdict_learned():
    v = verdict(_metrics(0.91), _metrics(0.05), {"sentence": 0.8})
    assert v["learned"] and v["problems"] == [] and v["line"].startswith("LEARNED") and "0.910" in v["line"]


def test_verdict_without_goal_still_catches_a_constant_argmax():
    assert verdict(_metrics(0.55), None, {})["line"] == "LEARNED: held-out sentence-accuracy PCC 0.550; with the audio silenced n/a."
    assert not verdict(_metrics(0.55, reason="predicted scores are constant (8)"), None, {})["learned"]


def test_verdict_below_goal_names_goal_and_what_to_try():
    v = verdict(_metrics(0.42), _metrics(0.01), {"sentence": 0.8})
    assert not v["learned"] and v["line"].startswith("DID NOT LEARN")
    assert "0.420 is below its goal 0.8" in v["line"] and "What to try" in v["line"]


def test_verdict_constant_argmax_is_not_learning_even_when_expected_pcc_is_high():
    v = verdict(_metrics(0.85, reason="predicted scores are constant (9)"), None, {"sentence": 0.8})
    assert not v["learned"] and "constant (9)" in v["line"] and "label prior" in v["line"]


def test_verdict_undefined_pcc_and_missing_level_fail():
    assert not verdict(_metrics(None), None, {"sentence": 0.8})["learned"]
    v = verdict(_metrics(0.9, phone=0.3), None, {"sentence": 0.8, "phone": 0.6})
    assert not v["learned"] and "phone-accuracy PCC 0.300" in v["line"]


def test_verdict_audio_control_that_keeps_its_correlation_fails():
    v = verdict(_metrics(0.9), _metrics(0.7), {"sentence": 0.8})
    assert not v["learned"] and "silenced" in v["line"] and "make test" in v["line"]


@pytest.mark.parametrize("recipe, n_train, epochs", [
    ("demo", 400, 10), ("demo", 320, 13), ("demo", 160, 25),  # 5 epochs x 100 steps = 500 steps kept
    ("phi4-apa", 400, 16),  # batch 16: 8 epochs x 50 steps = 400 steps kept
    ("demo", 800, None), ("demo", 1600, None),  # the tuned size or larger: the recipe as it is
])
def test_a_smaller_synthetic_corpus_keeps_the_recipes_number_of_steps(recipe, n_train, epochs):
    from lmm_apa.demo import RECIPES, TINY_CONFIG, step_budget_sets

    sets = ["model=m", "data.train=[{path: c, split: train}]", *RECIPES[recipe].overrides]
    assert step_budget_sets(TINY_CONFIG, sets, n_train) == ([] if epochs is None else [f"epochs={epochs}"])


def test_demo_on_a_small_corpus_trains_longer_unless_the_caller_says_otherwise(tmp_path, monkeypatch, capsys):
    """run_demo adds the step budget's epochs for the corpus it writes, and says so; a caller's own
    override wins; below MIN_LEARNING_UTTERANCES it warns first that the tiny model may not learn."""
    from types import SimpleNamespace

    import lmm_apa.demo

    seen = []

    def record_training(config, sets, out, console):  # what training would be given; no training
        seen.append(list(sets))
        return SimpleNamespace(tasks=["sentence-accuracy"], method="full"), {"adapter": "none", "global_step": 0}

    monkeypatch.setattr(lmm_apa.demo, "_train", record_training)
    monkeypatch.setattr(lmm_apa.demo, "_make_tiny_model", lambda out, seed, arch, console: str(out / "tiny-model"))
    monkeypatch.setattr(lmm_apa.demo, "_assess", lambda *a: ({"written": 10}, _metrics(0.3)))  # a miss
    monkeypatch.setattr(lmm_apa.demo, "_silence_control", lambda *a: None)
    said, verdicts = [], []
    for overrides in ([], ["epochs=2"], ["max_steps=7"]):
        verdicts.append(lmm_apa.demo.run_demo(tmp_path / f"d{len(seen)}", seed=0, utterances=50, overrides=overrides)["verdict"])
        said.append(" ".join(capsys.readouterr().err.split()))
    epochs = [[s for s in sets if s.startswith("epochs=")] for sets in seen]
    assert epochs[0] == ["epochs=100"]  # 40 training readings, 5 steps an epoch: 100 epochs for the 500 steps
    assert "schedule 100 epochs on 40 training readings" in said[0]
    assert epochs[1] == ["epochs=2"] and epochs[2] == []  # the caller chose the length: no budget added
    assert "schedule" not in said[1] + said[2]
    assert all("--utterances 50: below 400 the tiny model may not learn" in text for text in said)
    # the miss is put down to the corpus size, unless the caller shortened training themselves
    assert "--utterances 400 or more" in verdicts[0] and "--seed" not in verdicts[0]
    assert all("--seed" in v and "too few" not in v for v in verdicts[1:])


def test_verdict_on_a_small_synthetic_corpus_names_the_corpus_size_not_the_seed():
    """Below MIN_LEARNING_UTTERANCES a miss is the corpus' size, whatever else went wrong: the advice
    is a larger --utterances, not another seed or `make test` (which would wrongly suggest a broken
    pipeline). At or above it, and on a corpus the demo did not write, the advice is as before."""
    from lmm_apa.demo import MIN_LEARNING_UTTERANCES

    small = MIN_LEARNING_UTTERANCES - 100
    for silenced in (None, _metrics(0.45)):  # a miss, and a control that kept its correlation
        line = verdict(_metrics(0.3), silenced, {"sentence": 0.8}, utterances=small)["line"]
        assert line.startswith("DID NOT LEARN") and f"{small} synthetic readings are too few" in line
        assert f"--utterances {MIN_LEARNING_UTTERANCES} or more" in line and "make test" not in line
    for n in (MIN_LEARNING_UTTERANCES, None):
        line = verdict(_metrics(0.3), None, {"sentence": 0.8}, utterances=n)["line"]
        assert "--seed" in line and "too few" not in line
    assert verdict(_metrics(0.9), None, {"sentence": 0.8}, utterances=small)["learned"]  # a learned run is not second-guessed


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1, 10**30, 1.5, True])
def test_seed_outside_the_integer_range_is_refused_naming_the_option(seed):
    with pytest.raises(ValueError, match="--seed"):
        check_demo_args(seed, 1000)


def test_corpus_too_small_for_a_test_split_is_refused_naming_the_option():
    check_demo_args(0, 1000)
    check_demo_args(SEED_MAX, 50)
    for n in (1, 5, 20):
        with pytest.raises(ValueError, match=r"--utterances .*too small.*use --utterances \d+"):
            check_demo_args(0, n)


def _invoke(args):
    from typer.testing import CliRunner

    from lmm_apa.cli import app

    return CliRunner().invoke(app, ["demo", *args])


def test_demo_cli_rejects_bad_seed_and_small_corpus_before_any_work(tmp_path):
    for args, needle in ((["--seed", "-3"], "--seed"), (["--seed", str(2**40)], "--seed"),
                         (["--utterances", "8"], "--utterances")):
        res = _invoke(["--out", str(tmp_path / "d"), *args])
        assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "d" / "train").exists()  # refused before training


def test_demo_cli_rejects_missing_corpus(tmp_path):
    res = _invoke(["--out", str(tmp_path / "d"), "--corpus", str(tmp_path / "nope")])
    assert res.exit_code != 0
    assert "nope" in (res.output + str(res.exception))


def test_demo_cli_last_line_is_the_verdict(tmp_path, monkeypatch):
    import lmm_apa.demo

    line = "DID NOT LEARN: held-out sentence-accuracy PCC 0.300 is below its goal 0.8. What to try: ..."
    monkeypatch.setattr(lmm_apa.demo, "run_demo", lambda out, **kw: {"out": str(out), "verdict": line})
    res = _invoke(["--out", str(tmp_path / "d"), "--seed", "4"])
    assert res.exit_code == 0
    assert res.output.strip().splitlines()[-1] == line
