"""``lmm-apa reproduce``: the tables' definitions against the papers, bad input, rendering, and one
smoke table end to end (the cheapest: Wang et al. 2025 Table 1, two trainings and two evaluations)
with its resume and a failing row that leaves the finished one in place."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from lmm_apa.reproduce.render import render_markdown, table_json
from lmm_apa.reproduce.runner import Inputs, RowError, TableRun, reproduce_table
from lmm_apa.reproduce.tables import AHN2025_TABLE3, TABLES, WANG2025_TABLE1, WANG2025_TABLE2, WANG2025_TABLE3, get_table
from lmm_apa.train.config import load_config, shipped_configs

torch.set_num_threads(2)


# --------------------------------------------------------------------------- the tables as data
@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_row_is_complete_and_every_run_resolves(name):
    table = get_table(name)
    columns = {c.key for c in table.columns}
    trains, evals = {t.name for t in table.trains}, {e.name for e in table.evals}
    for row in table.rows:
        assert set(row.published) == columns, row.label
        assert row.reference == (not row.sources), row.label
        assert not row.sources or set(row.sources) == columns
        assert set(row.sources.values()) <= evals
    for t in table.trains:
        assert t.config in shipped_configs()
        assert t.init_from is None or t.init_from in trains
        assert load_config(t.config).model == table.model
    for e in table.evals:
        assert e.train is None or e.train in trains


def test_published_numbers_are_the_papers():
    t1 = {r.label: r.published for r in WANG2025_TABLE1.rows}
    assert t1["FT"]["phone.rmse"] == 0.39 and t1["FT"]["word.stress"] == (0.11, 0.11)
    assert t1["SimPO"]["sentence.total"] == (0.72, 0.66) and t1["FT"]["sentence.completeness"] is None
    assert t1["Azure PA"]["sentence.completeness"] == (0.26, 0.14) and t1["GOPT"]["phone.accuracy"] == (0.61, None)
    t2 = {r.label: r.published for r in WANG2025_TABLE2.rows}
    assert [t2["SimPO"][c.key] for c in WANG2025_TABLE2.columns] == [0.58, -0.01, 0.60, 0.69, 0.74, 0.73, 0.72]
    assert t2["FT + Private"]["word.stress"] == 0.15
    t3 = {r.label: r.published for r in WANG2025_TABLE3.rows}
    assert t3["Zero-Shot"]["word.accuracy"] == (-0.03, -0.02) and t3["Zero-Shot"]["sentence.accuracy"] is None
    assert [t3["DPO"][c.key] for c in WANG2025_TABLE3.columns] == [(0.60, 0.55), (0.76, 0.70), (0.79, 0.78),
                                                                  (0.78, 0.76), (0.76, 0.71)]
    a3 = {(r.label, r.extra): r.published for r in AHN2025_TABLE3.rows}
    assert [a3[("no training", "0")][c.key] for c in AHN2025_TABLE3.columns] == [
        -0.041, -0.017, -0.0493, -0.104, 0.97, 0.792, 0.143, 0.154, 0.134]
    assert a3[("Unfreeze", "4")]["sentence.accuracy"] == 0.743 and a3[("LoRA", "3")]["mdd.per"] == 0.114


def test_rows_use_the_runs_the_papers_describe():
    # Table 3 DPO continues each task's FT adapter; Table 1/2 SimPO continue FT
    for t in WANG2025_TABLE3.trains:
        if t.name.startswith("dpo-"):
            assert t.init_from == "ft-" + t.name[4:] and load_config(t.config).objective == "dpo"
    assert WANG2025_TABLE1.train("simpo").init_from == "ft" and WANG2025_TABLE2.train("simpo").init_from == "ft"
    assert WANG2025_TABLE2.train("ft-private").needs_private
    # Ahn & Nam: epochs 1-4 of ONE run per method, each epoch's adapter evaluated; the baseline untrained, no tokens
    lora = [e for e in AHN2025_TABLE3.evals if e.train == "lora"]
    assert [e.adapter for e in lora] == [f"adapter-epoch{n}" for n in (1, 2, 3, 4)]
    assert all(load_config(AHN2025_TABLE3.train(m).config).save_every_epoch for m in ("lora", "unfreeze"))
    baseline = AHN2025_TABLE3.eval("no-training")
    assert baseline.train is None and not baseline.control_tokens and baseline.tasks == ("apa", "mdd")
    zero_shot = [e for e in WANG2025_TABLE3.evals if e.name.startswith("zero-shot")]
    assert len(zero_shot) == 5 and all(e.train is None and e.control_tokens for e in zero_shot)


# --------------------------------------------------------------------------- bad input
def test_an_unknown_table_lists_the_names():
    with pytest.raises(ValueError, match="wang2025-table1, wang2025-table2, wang2025-table3, ahn2025-table3"):
        get_table("wang2025-table9")
    from lmm_apa.cli import app

    result = CliRunner().invoke(app, ["reproduce", "table9"])
    assert result.exit_code == 2 and "ahn2025-table3" in result.output


def test_a_real_run_needs_a_corpus(tmp_path):
    with pytest.raises(ValueError, match="--corpus"):
        reproduce_table("wang2025-table2", out=tmp_path)
    with pytest.raises(FileNotFoundError, match="no-corpus"):
        reproduce_table("wang2025-table2", corpus=tmp_path / "no-corpus", out=tmp_path)
    with pytest.raises(ValueError, match="decoding 'greedy'"):
        reproduce_table("wang2025-table2", corpus=tmp_path, out=tmp_path, decoding="greedy")
    with pytest.raises(FileNotFoundError, match="private.jsonl"):
        reproduce_table("wang2025-table2", corpus=tmp_path, out=tmp_path, private=tmp_path / "private.jsonl")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from lmm_apa.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("repro-synth") / "synth"
    write_synthetic_corpus(out, n_utterances=8, seed=1, test_fraction=0.5)
    return out


def test_a_missing_private_corpus_fails_its_row_by_name(tiny_corpus, tmp_path):
    run = TableRun(WANG2025_TABLE2, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    assert run.run_eval("ft-private") is None
    assert "--private" in run.failed["train:ft-private"] and run.status["ft-private"] == "failed"
    md = render_markdown(WANG2025_TABLE2, table_json(WANG2025_TABLE2, run))
    assert "FT + Private (ours) | failed" in md and "--private" in md


def test_a_corpus_without_the_labels_fails_the_row_naming_the_task(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    line = {"id": "u1", "audio": "a.wav", "text": "WE CALL IT BEAR", "accuracy": 8, "fluency": 8, "prosodic": 7,
            "completeness": 10, "total": 8, "split": "test"}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    run = TableRun(WANG2025_TABLE1, Inputs(model="m", corpus=tmp_path / "m.jsonl", out=tmp_path / "out"))
    with pytest.raises(RowError, match=r"m\.jsonl.*task 'full'"):  # sentence scores only: no word or phone scores
        run._tasks(WANG2025_TABLE1.eval("ft"))
    assert run.run_eval("ft") is None and "task 'full'" in run.failed["eval:ft"]
    assert [t.name for t in TableRun(AHN2025_TABLE3, run.inputs)._tasks(AHN2025_TABLE3.eval("no-training"))] == ["apa", "mdd"]


def test_the_no_training_baseline_prompts_without_control_tokens(tiny_corpus, tmp_path):
    run = TableRun(AHN2025_TABLE3, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    utt = run._test_split()[0]
    bare = run._tasks(AHN2025_TABLE3.eval("no-training"))
    trained = run._tasks(AHN2025_TABLE3.eval("lora-epoch1"))
    assert [t.name for t in bare] == ["apa", "mdd"]  # same tasks: evaluate reads them alike
    for plain, tokened in zip(bare, trained):
        assert tokened.instruction(utt).startswith(tokened.control_token)
        assert tokened.instruction(utt) == tokened.control_token + plain.instruction(utt)
        assert "<|" not in plain.instruction(utt)[:8]


# --------------------------------------------------------------------------- rendering
def test_cells_show_paper_ours_difference_and_underline_chance_correlations(tiny_corpus, tmp_path):
    run = TableRun(WANG2025_TABLE2, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    folder = run.eval_dir("ft")
    folder.mkdir(parents=True)
    metrics = {"word": {"accuracy": {"pcc": 0.60, "p": 1e-9, "scc": 0.5}, "stress": {"pcc": 0.03, "p": 0.4},
                        "total": {"pcc": None, "p": None}},
               "sentence": {a: {"pcc": 0.70, "p": 1e-6} for a in ("accuracy", "fluency", "prosodic", "total")}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    data = table_json(WANG2025_TABLE2, run)
    ft = data["rows"][0]
    assert ft["status"] == "finished"
    assert ft["cells"]["word.accuracy"]["diff"]["pcc"] == pytest.approx(0.03)
    assert ft["cells"]["word.stress"]["ours"] == {"pcc": 0.03, "p": 0.4}
    md = render_markdown(WANG2025_TABLE2, data)
    assert "| FT (paper) | 0.57 | -0.01 | 0.58 | 0.69 | 0.74 | 0.78 | 0.72 |" in md
    assert "| FT (ours) | 0.60 | <u>0.03</u> | - | 0.70 | 0.70 | 0.70 | 0.70 |" in md
    assert "| FT (Δ) | +0.03 | +0.04 | - | +0.01 | -0.04 | -0.08 | -0.02 |" in md
    assert data["rows"][1]["status"] == "not run"


# --------------------------------------------------------------------------- one smoke table
@pytest.mark.slow
def test_smoke_table_runs_resumes_and_keeps_finished_rows_when_one_fails(tmp_path):
    out = tmp_path / "t1"
    logs = []
    result = reproduce_table("wang2025-table1", out=out, smoke=True, overrides=["limit=2"], test_limit=2,
                             log=logs.append)
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["FT"]["status"] == rows["SimPO"]["status"] == "finished"
    assert rows["GOPT"]["reference"] and "status" not in rows["GOPT"]
    ft = json.loads((out / "evals" / "ft" / "metrics.json").read_text())
    assert ft["n"] == 2 and ft["row"]["tasks"] == ["full"]
    assert ft["phone"]["accuracy"]["n"] > 0 and rows["FT"]["cells"]["phone.rmse"]["ours"]["value"] is not None
    simpo_info = json.loads((out / "train" / "simpo" / "adapter" / "lmm_apa_adapter.json").read_text())
    assert simpo_info["init_adapter"] == str(out / "train" / "ft" / "adapter")  # SimPO continued FT
    md = (out / "table.md").read_text()
    assert "| FT (paper) | 0.39 | 0.38 / 0.34 |" in md and "| SimPO (ours) |" in md
    assert json.loads((out / "table.json").read_text())["table"] == "wang2025-table1"

    # a rerun skips every finished evaluation: nothing trains or predicts again
    stamp = (out / "evals" / "ft" / "metrics.json").stat().st_mtime_ns
    logs.clear()
    reproduce_table("wang2025-table1", out=out, smoke=True, overrides=["limit=2"], test_limit=2, log=logs.append)
    assert logs == [] and (out / "evals" / "ft" / "metrics.json").stat().st_mtime_ns == stamp

    # SimPO's inputs go missing: its row fails by name, FT's finished row stays
    shutil.rmtree(out / "evals" / "simpo")
    (out / "train" / "simpo" / "train_summary.json").unlink()
    shutil.rmtree(out / "train" / "ft" / "adapter")
    result = reproduce_table("wang2025-table1", out=out, smoke=True, overrides=["limit=2"], test_limit=2)
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["FT"]["status"] == "finished" and rows["SimPO"]["status"] == "failed"
    assert "init_adapter" in rows["SimPO"]["errors"][0] and "simpo" in rows["SimPO"]["errors"][0]
    assert "SimPO (ours) | failed" in (out / "table.md").read_text()


def test_an_interrupted_training_stops_the_table_and_says_how_to_resume(tiny_corpus, tmp_path, monkeypatch):
    import lmm_apa.train.run as train_run
    from lmm_apa.reproduce.runner import Interrupted

    calls = []

    def interrupted(config, overrides=None, callbacks=()):
        calls.append((config, list(overrides)))
        return {"interrupted": True, "global_step": 3, "adapter": None}

    monkeypatch.setattr(train_run, "train_from_config", interrupted)
    monkeypatch.setattr("lmm_apa.reproduce.runner.smoke_inputs",
                        lambda table, out, seed=0: ("tiny", tiny_corpus, {"path": str(tiny_corpus), "split": "train"}))
    with pytest.raises(Interrupted, match="step 3.*rerun"):
        reproduce_table("wang2025-table2", out=tmp_path, smoke=True)
    assert len(calls) == 1 and calls[0][0] == "wang2025_word_sentence"  # stopped at the first run, no other row tried
    sets = calls[0][1]
    assert f"output_dir={tmp_path / 'train' / 'ft'}" in sets and "init_adapter=null" in sets and "epochs=1" in sets
    table = json.loads((tmp_path / "table.json").read_text())  # the table is still written
    assert [r["status"] for r in table["rows"]] == ["not run", "not run", "not run"]


def test_published_numbers_print_as_the_papers_print_them(tiny_corpus, tmp_path):
    run = TableRun(AHN2025_TABLE3, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    md = render_markdown(AHN2025_TABLE3, table_json(AHN2025_TABLE3, run))
    assert "| no training (paper) | 0 | -0.041 | -0.017 | -0.0493 | -0.104 | 0.97 | 0.792 | 0.143 | 0.154 | 0.134 |" in md
    assert "| Unfreeze (paper) | 4 | 0.743 | 0.717 | 0.704 | 0.666 | 0.142 | 0.142 | 0.667 | 0.671 | 0.663 |" in md
    run = TableRun(WANG2025_TABLE3, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    md = render_markdown(WANG2025_TABLE3, table_json(WANG2025_TABLE3, run))
    assert "| Azure PA (published) | 0.62 / 0.47 | 0.70 / 0.68 | 0.72 / 0.62 | 0.84 / 0.78 | 0.78 / 0.75 |" in md
    assert "| Zero-Shot (paper) | -0.03 / -0.02 | - | - | - | - |" in md


# --------------------------------------------------------------------------- reruns with other inputs
@pytest.fixture
def no_rows(monkeypatch):
    """A table run that evaluates nothing (each row 'not run'): for what happens around the rows."""
    monkeypatch.setattr(TableRun, "run_eval", lambda self, name: None)


def test_a_smoke_run_has_its_own_default_folder(tiny_corpus, tmp_path, monkeypatch, no_rows):
    from lmm_apa.reproduce.runner import default_out

    monkeypatch.setattr("lmm_apa.reproduce.runner.smoke_inputs",
                        lambda table, out, seed=0: ("tiny", tiny_corpus, {"path": str(tiny_corpus), "split": "train"}))
    monkeypatch.chdir(tmp_path)
    reproduce_table("wang2025-table1", smoke=True)
    reproduce_table("wang2025-table1", corpus=tiny_corpus)
    smoke = json.loads((tmp_path / "reproduce" / "wang2025-table1-smoke" / "run.json").read_text())
    real = json.loads((tmp_path / "reproduce" / "wang2025-table1" / "run.json").read_text())
    assert smoke["smoke"] and not real["smoke"] and real["model"] == WANG2025_TABLE1.model
    assert default_out("wang2025-table1", smoke=True) == Path("reproduce") / "wang2025-table1-smoke"


def test_a_rerun_with_other_inputs_is_refused_naming_both_values(tiny_corpus, tmp_path, monkeypatch, no_rows):
    monkeypatch.setattr("lmm_apa.reproduce.runner.smoke_inputs",
                        lambda table, out, seed=0: ("tiny", tiny_corpus, {"path": str(tiny_corpus), "split": "train"}))
    reproduce_table("wang2025-table1", corpus=tiny_corpus, out=tmp_path, model="m")
    reproduce_table("wang2025-table1", corpus=tiny_corpus, out=tmp_path, model="m", batch_size=2)  # same inputs: fine
    with pytest.raises(ValueError, match=r"decoding: 'free' there, 'constrained' now.*--out"):
        reproduce_table("wang2025-table1", corpus=tiny_corpus, out=tmp_path, model="m", decoding="constrained")
    with pytest.raises(ValueError, match=r"model: 'm' there, 'tiny' now.*smoke: False there, True now"):
        reproduce_table("wang2025-table1", out=tmp_path, smoke=True, decoding="free")
    assert json.loads((tmp_path / "run.json").read_text())["decoding"] == "free"  # the record is kept


def test_reproduce_refuses_to_run_under_a_distributed_launcher(tiny_corpus, tmp_path, monkeypatch, no_rows):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="single process, but WORLD_SIZE=2"):
        reproduce_table("wang2025-table1", corpus=tiny_corpus, out=tmp_path)
    assert not (tmp_path / "table.json").exists() and not (tmp_path / "run.json").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    reproduce_table("wang2025-table1", corpus=tiny_corpus, out=tmp_path)


def test_the_cli_prints_log_lines_as_text_not_markup(tmp_path, monkeypatch):
    from lmm_apa.cli import app

    def fake(name, log, **kwargs):
        log("[failed] evaluation 'ft' failed: ValueError: bad tag [/bold] in [red]text")
        return {"rows": []}

    monkeypatch.setattr("lmm_apa.reproduce.reproduce_table", fake)
    result = CliRunner().invoke(app, ["reproduce", "wang2025-table1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[failed] evaluation 'ft' failed: ValueError: bad tag [/bold] in [red]text" in result.output


# --------------------------------------------------------------------------- stale files
def _fake_prediction(monkeypatch):
    """predict_corpus that appends one line to its output (as a resumed run continues a file) and
    records whether it found lines already there; the model load and evaluation do nothing."""
    import lmm_apa.evaluate.run as evaluate_run
    import lmm_apa.infer.predict as predict
    import lmm_apa.models.loading as loading

    found = []

    def predict_corpus(corpus, model, task, out, **kwargs):
        found.append(out.read_text().splitlines() if out.exists() else [])
        with open(out, "a") as f:
            f.write(json.dumps({"decoding": kwargs["decoding"]}) + "\n")

    monkeypatch.setattr(predict, "predict_corpus", predict_corpus)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: object())
    monkeypatch.setattr(evaluate_run, "evaluate_predictions", lambda *a, **k: {})
    return found


def test_predictions_of_other_inputs_are_cleared_not_continued(tiny_corpus, tmp_path, monkeypatch):
    found = _fake_prediction(monkeypatch)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    run = TableRun(WANG2025_TABLE1, Inputs(model="m", corpus=tiny_corpus, out=tmp_path / "out"))
    ev = WANG2025_TABLE1.eval("ft")
    tasks = run._tasks(ev)
    folder = run.eval_dir("ft")
    folder.mkdir(parents=True)
    (folder / "predictions-full.jsonl").write_text('{"old": "unknown inputs"}\n')
    run._predict_and_score(ev, tasks, adapter)
    assert found[-1] == []  # predictions of unknown origin: cleared

    (folder / "metrics.json").unlink()  # an interrupted evaluation, same inputs: the file is continued
    run._predict_and_score(ev, tasks, adapter)
    assert len(found[-1]) == 1

    run.inputs.decoding = "constrained"  # other decoding: cleared
    run._predict_and_score(ev, tasks, adapter)
    assert found[-1] == []
    (adapter / "adapter_config.json").write_text('{"r": 8}')  # the adapter retrained: cleared
    run._predict_and_score(ev, tasks, adapter)
    assert found[-1] == [] and json.loads((folder / "inputs.json").read_text())["adapter"] == str(adapter)


def test_a_corrupt_train_summary_means_train_again(tiny_corpus, tmp_path, monkeypatch):
    import lmm_apa.train.run as train_run

    calls = []

    def train(config, overrides=None, callbacks=()):
        calls.append(config)
        return {"adapter": "a", "interrupted": False}

    monkeypatch.setattr(train_run, "train_from_config", train)
    run = TableRun(WANG2025_TABLE1, Inputs(model="m", corpus=tiny_corpus, out=tmp_path))
    run.train_dir("ft").mkdir(parents=True)
    (run.train_dir("ft") / "train_summary.json").write_text('{"adapter": "/x/adap')  # cut off mid-write
    assert run.ensure_trained("ft") == run.train_dir("ft") and calls == ["wang2025_ft"]


def test_the_train_summary_is_replaced_whole(tmp_path, monkeypatch):
    import lmm_apa.train.run as train_run

    train_run.write_summary(tmp_path, {"adapter": "old"})
    assert json.loads((tmp_path / "train_summary.json").read_text()) == {"adapter": "old"}

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(train_run.os, "replace", crash)
    with pytest.raises(OSError):
        train_run.write_summary(tmp_path, {"adapter": "new"})
    assert json.loads((tmp_path / "train_summary.json").read_text()) == {"adapter": "old"}  # never half-written
