"""Trainer pieces: length-grouped sampler, checkpoint discovery, loss normalisation, collators, loss log."""

import json
import math

import numpy as np
import pytest
import torch

from lmm_apa.train.trainer import EpochLengthGroupedSampler, find_resume_checkpoint, plot_loss_log

torch.set_num_threads(2)


def _padding_fraction(order, lengths, batch):
    pad = real = 0
    for i in range(0, len(order), batch):
        chunk = [lengths[j] for j in order[i:i + batch]]
        pad += max(chunk) * len(chunk) - sum(chunk)
        real += sum(chunk)
    return pad / (pad + real)


def test_length_grouped_sampler_is_a_seeded_permutation_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(50, 800, size=400)]
    s = EpochLengthGroupedSampler(8, lengths=lengths, seed=5)
    first = list(s)
    assert sorted(first) == list(range(400))
    assert list(s) == first  # same epoch, same order (a resumed run sees the same batches)
    s.set_epoch(1)
    second = list(s)
    assert second != first and sorted(second) == list(range(400))
    assert list(EpochLengthGroupedSampler(8, lengths=lengths, seed=5)) == first
    random_order = [int(i) for i in rng.permutation(400)]
    assert _padding_fraction(first, lengths, 8) < 0.5 * _padding_fraction(random_order, lengths, 8)


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    assert find_resume_checkpoint(tmp_path / "absent") is None
    assert find_resume_checkpoint(tmp_path) is None
    for step, state in [(2, '{"global_step": 2}'), (10, '{"global_step": 10}'), (12, '{"global_st')]:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-14").mkdir()  # no trainer_state.json: killed mid-save
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / ".checkpoint-tmp" / "checkpoint-16").mkdir(parents=True)
    assert find_resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def test_loss_plot_is_written(tmp_path):
    log = tmp_path / "loss_log.jsonl"
    log.write_text("".join(json.dumps({"step": i, "loss": 1 / i, "simpo": 0.5, "ce": 2 / i}) + "\n" for i in range(1, 6)))
    png = plot_loss_log(log, tmp_path / "loss.png")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_sft_loss_is_normalised_over_the_whole_accumulated_step(tiny_qwen2_audio, tmp_path):
    """grad_accum 2: the step's loss is the token-mean CE over BOTH micro-batches (not their sum,
    which the stock Trainer would log for a model that accepts loss kwargs)."""
    from lmm_apa.data.synth import write_synthetic_corpus
    from lmm_apa.train.config import load_config
    from lmm_apa.train.dataset import SkipLog, TrainDataset, build_examples, estimate_lengths
    from lmm_apa.train.losses import answer_token_nll
    from lmm_apa.train.run import build_trainer, load_training_corpus, prepare_backbone

    write_synthetic_corpus(tmp_path / "synth", n_utterances=6, seed=1, test_fraction=0.0)
    cfg = load_config("tiny_demo", [f"model={tiny_qwen2_audio}", f"data.train={tmp_path / 'synth'}",
                                    f"output_dir={tmp_path / 'run'}", "batch_size=1", "grad_accum=2", "max_steps=1",
                                    "logging_steps=1", "tasks=[word-accuracy]"])
    skip = SkipLog(None)
    examples, _ = build_examples(load_training_corpus(cfg, skip).utterances, cfg.tasks, skip)
    backbone = prepare_backbone(cfg)
    examples = estimate_lengths(examples, backbone.tokenizer, backbone.arch, skip)
    trainer = build_trainer(cfg, backbone, TrainDataset(examples, 16000, skip))
    loader = iter(trainer.get_train_dataloader())
    batches = [next(loader), next(loader)]
    model = backbone.model
    model.eval()
    with torch.no_grad():
        sums = [answer_token_nll(model(**{k: v for k, v in b.items() if k != "labels"}).logits, b["labels"], "sum")
                for b in batches]
    counts = [int(b["labels"][:, 1:].ne(-100).sum()) for b in batches]
    assert counts[0] != counts[1] or sums[0] != sums[1]
    expected = float(sum(sums)) / sum(counts)
    trainer.train()
    logged = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    assert logged == pytest.approx(expected, rel=1e-4)
    assert math.isfinite(logged)


def test_preference_collator_puts_chosen_rows_first():
    from lmm_apa.train.collator import PreferenceCollator, SFTCollator

    class Recorder:
        def build_batch(self, audios, prompts, targets=None):
            self.call = (audios, prompts, targets)
            return {"n": len(targets)}

    rec = Recorder()
    items = [{"id": str(i), "audio": np.full(4, i, np.float32), "prompt": f"p{i}", "target": f"good{i}",
              "rejected": f"bad{i}"} for i in range(3)]
    assert PreferenceCollator(rec)(items) == {"n": 6}
    audios, prompts, targets = rec.call
    assert targets == ["good0", "good1", "good2", "bad0", "bad1", "bad2"]
    assert prompts == ["p0", "p1", "p2"] * 2 and [a[0] for a in audios] == [0, 1, 2, 0, 1, 2]
    SFTCollator(rec)(items)
    assert rec.call[2] == ["good0", "good1", "good2"]
    with pytest.raises(ValueError, match="rejected"):
        PreferenceCollator(rec)([{**items[0], "rejected": None}])


def test_right_padding_mask_is_dropped_only_where_it_changes_nothing():
    from lmm_apa.train.trainer import without_right_padding_mask

    right = {"input_ids": torch.ones(2, 4), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])}
    assert "attention_mask" not in without_right_padding_mask(right)
    for kept in ([[0, 0, 1, 1], [1, 1, 1, 1]], [[1, 0, 1, 1], [1, 1, 1, 1]]):  # left padding, a hole
        batch = {"input_ids": torch.ones(2, 4), "attention_mask": torch.tensor(kept)}
        assert without_right_padding_mask(batch) is batch


@pytest.mark.parametrize("arch", ["qwen2-audio", "phi4-mm"])
def test_training_forward_without_the_right_padding_mask_gives_the_same_answer_logits(arch, request):
    """Rows of different lengths (right-padded): every answer position's logits are the same with
    the attention mask and without it (plain causal attention), for both backbones."""
    from lmm_apa.models.backbones import load_backbone
    from lmm_apa.train.trainer import answer_logits

    backbone = load_backbone(request.getfixturevalue(f"tiny_{arch.replace('-', '_')}"))
    rng = np.random.default_rng(0)
    audios = [0.1 * rng.standard_normal(int(16000 * s)).astype(np.float32) for s in (1.0, 2.3, 1.6)]
    batch = backbone.build_batch(audios, ["Score it.", "Score this reading, please.", "Score."],
                                 ["Accuracy: 7", "Accuracy: 10, fluency: 9", "Accuracy: 3"])
    assert batch["attention_mask"].min() == 0  # the rows really are padded
    labels = batch.pop("labels")
    model = backbone.model.eval()
    with torch.no_grad():
        plain = answer_logits(model, batch, labels).logits
        with_mask = model(**batch, use_cache=False).logits[:, :-1][labels[:, 1:] != -100]
    assert plain.shape[1] == with_mask.shape[0] > 0
    torch.testing.assert_close(plain[0], with_mask, rtol=1e-4, atol=1e-5)
