"""Training configs: every shipped YAML validates, overrides work, mistakes are named."""

import pytest

from lmm_apa.train.config import apply_overrides, load_config, resolve_config_path, shipped_configs

SINGLE_TASKS = ("word_accuracy", "sentence_accuracy", "sentence_fluency", "sentence_prosodic", "sentence_total")
PAPER_CONFIGS = {
    "wang2025_ft", "wang2025_simpo", "wang2025_ft_private", "wang2025_word_sentence", "wang2025_word_sentence_simpo",
    *(f"wang2025_single_{t}{dpo}" for t in SINGLE_TASKS for dpo in ("", "_dpo")),
    "ahn2025_lora", "ahn2025_unfreeze", "tiny_demo",
}


def test_every_paper_experiment_ships_a_config():
    assert PAPER_CONFIGS <= set(shipped_configs())


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_shipped_config_validates(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.tasks and cfg.data.train


def test_wang2025_hyperparameters():
    for name in ("wang2025_ft", "wang2025_simpo", "wang2025_single_sentence_total_dpo", "wang2025_single_word_accuracy"):
        cfg = load_config(name)
        assert cfg.model == "Qwen/Qwen2-Audio-7B-Instruct"
        assert (cfg.method, cfg.lora.r, cfg.batch_size, cfg.grad_accum) == ("lora", 8, 1, 8)
        assert (cfg.optimizer, cfg.lr, cfg.scheduler, cfg.warmup_ratio, cfg.epochs) == ("adamw_torch", 1e-4, "cosine", 0.1, 3)
        assert cfg.bf16 is True
    simpo = load_config("wang2025_simpo")
    assert (simpo.objective, simpo.beta, simpo.gamma, simpo.lambda_ce, simpo.gamma_inside_beta) == ("simpo", 0.1, 0.5, 0.1, True)
    for task in SINGLE_TASKS:  # Table 3 "DPO" continues the same task's "FT" adapter, its reference policy
        dpo = load_config(f"wang2025_single_{task}_dpo")
        assert (dpo.objective, dpo.dpo_ce_weight) == ("dpo", 0.0)
        assert dpo.init_adapter == load_config(f"wang2025_single_{task}").output_dir + "/adapter"
        assert dpo.tasks == [task.replace("_", "-")]
    assert simpo.init_adapter == load_config("wang2025_ft").output_dir + "/adapter"
    table2_simpo = load_config("wang2025_word_sentence_simpo")
    assert table2_simpo.objective == "simpo" and table2_simpo.tasks == ["word-sentence"]
    assert table2_simpo.init_adapter == load_config("wang2025_word_sentence").output_dir + "/adapter"
    assert load_config("wang2025_ft").init_adapter is None
    private = load_config("wang2025_ft_private")
    assert private.epochs == 2 and len(private.data.train) == 2 and private.tasks == ["word-sentence"]
    assert load_config("wang2025_ft").tasks == ["full"]
    assert load_config("wang2025_single_sentence_prosodic").tasks == ["sentence-prosodic"]


def test_ahn2025_hyperparameters():
    lora, unfreeze = load_config("ahn2025_lora"), load_config("ahn2025_unfreeze")
    for cfg in (lora, unfreeze):
        assert cfg.model == "microsoft/Phi-4-multimodal-instruct"
        assert cfg.tasks == ["apa", "mdd"]
        assert (cfg.batch_size, cfg.grad_accum, cfg.optimizer, cfg.lr, cfg.weight_decay) == (8, 8, "adam", 2e-5, 0.0)
    # Table 3: epochs 1-4 of one run each, an adapter kept per epoch
    assert (lora.method, lora.epochs, lora.save_every_epoch) == ("lora", 4, True)
    assert (unfreeze.method, unfreeze.epochs, unfreeze.save_every_epoch) == ("unfreeze", 4, True)


def test_overrides_are_dotted_and_yaml_parsed():
    cfg = load_config("wang2025_ft", ["lora.r=16", "bf16=false", "tasks=[apa, mdd]", "lr=3e-5",
                                     "data.train=/some/corpus", "output_dir=/tmp/x", "lambda=0.3"])
    assert cfg.lora.r == 16 and cfg.lora.alpha == 16  # sibling keys kept
    assert cfg.bf16 is False and cfg.tasks == ["apa", "mdd"] and cfg.lr == 3e-5
    assert cfg.data.train[0].path == "/some/corpus" and cfg.data.train[0].split is None
    assert cfg.output_dir == "/tmp/x" and cfg.lambda_ce == 0.3
    assert apply_overrides({"a": {"b": 1}}, ["a.c.d=x"]) == {"a": {"b": 1, "c": {"d": "x"}}}


def test_unknown_key_is_named_with_the_file(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("model: m\ntasks: [full]\ndata: {train: [c]}\nlearning_rate: 1e-4\n")
    with pytest.raises(ValueError, match=r"mine\.yaml.*learning_rate"):
        load_config(p)
    with pytest.raises(ValueError, match=r"lora\.rank"):
        load_config("wang2025_ft", ["lora.rank=4"])


def test_bad_values_and_inconsistent_settings_are_rejected():
    with pytest.raises(ValueError, match="method"):
        load_config("wang2025_ft", ["method=prefix"])
    with pytest.raises(ValueError, match="dpo"):
        load_config("wang2025_single_word_accuracy_dpo", ["method=unfreeze"])
    with pytest.raises(ValueError, match="weight_decay"):
        load_config("ahn2025_lora", ["weight_decay=0.01"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("wang2025_ft", ["lora.r"])


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="no-such-task"):
        load_config("wang2025_ft", ["tasks=[no-such-task]"])


def test_missing_config_lists_the_shipped_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="wang2025_ft"):
        resolve_config_path("no_such_config")
    with pytest.raises(FileNotFoundError):
        resolve_config_path(str(tmp_path / "absent.yaml"))
    assert resolve_config_path("wang2025_ft.yaml").name == "wang2025_ft.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)


def test_config_names_used_in_the_code_and_docs_are_shipped():
    """A renamed config must not leave a stale name behind (the demo, the reproduce tables, docs)."""
    import re
    from pathlib import Path

    import lmm_apa

    root = Path(lmm_apa.__file__).resolve().parent
    files = [p for p in root.rglob("*.py")] + [p for p in (root.parent.parent / "docs").glob("*.md")]
    files += [root.parent.parent / "README.md"]
    shipped = set(shipped_configs())
    stale = {}
    for f in files:
        if not f.is_file():
            continue
        for name in re.findall(r"\b((?:wang2025|ahn2025|seed00\d)_[a-z_]+[a-z])\b", f.read_text(encoding="utf-8")):
            if name not in shipped:
                stale.setdefault(name, set()).add(f.name)
    assert not stale, f"config names that are not shipped: {stale}"
