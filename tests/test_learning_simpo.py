"""SimPO + λ·CE raises the held-out preference margin over SFT alone (Wang et al. 2025 section 2.2).

Both arms start from the same SFT model (the tiny Qwen2-Audio model of ``demo_learning``, the demo's
recipe) and take the same number of steps on the synthetic train split: one more SFT, the
other SimPO + 0.1·CE (β 0.1, γ 0.5 inside the β bracket, as the paper writes it). The margin is
mean r(y+) − r(y−) on held-out simulated pairs (``make_preference_pair``), r the mean token
log-likelihood of the answer, as in the paper's loss."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

STEPS = 12


def _as_base_model(adapter: Path, base: Path, out: Path) -> Path:
    """A fully fine-tuned model folder + the base model's processor files = a model folder
    ``load_backbone`` (and so a training config's ``model``) takes: the SFT model as the start."""
    shutil.copytree(adapter, out)
    for f in base.iterdir():
        if f.is_file() and not (out / f.name).exists():
            shutil.copy(f, out / f.name)
    return out


def heldout_margin(model_dir: Path, adapter: Path, corpus: Path, task: str, batch: int = 12) -> float:
    import torch

    from lmm_apa.data.audio import load_audio
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.models.adapters import load_adapter
    from lmm_apa.models.backbones import load_backbone
    from lmm_apa.prompts.tasks import get_task
    from lmm_apa.train.losses import sequence_logps
    from lmm_apa.train.preference import make_preference_pair

    bb = load_adapter(load_backbone(str(model_dir)), adapter)
    bb.model.eval()
    t = get_task(task)
    utts = [u for u in load_corpus(corpus, split="test").utterances if t.supports(u)]
    margins = []
    with torch.no_grad():
        for i in range(0, len(utts), batch):
            us = utts[i:i + batch]
            pairs = [make_preference_pair(u, t, seed=0) for u in us]
            audios = [load_audio(u.audio) for u in us]
            prompts = [t.instruction(u) for u in us]
            r = []
            for k in (0, 1):
                b = bb.build_batch(audios, prompts, [p[k] for p in pairs])
                logits = bb.model(**{k2: v for k2, v in b.items() if k2 != "labels"}).logits
                r.append(sequence_logps(logits, b["labels"], average=True))
            margins += (r[0] - r[1]).tolist()
    return float(np.mean(margins))


def test_simpo_raises_heldout_margin_over_sft(tmp_path, demo_learning):
    from lmm_apa.train.run import train_from_config

    corpus, base = Path(demo_learning["corpus"]), Path(demo_learning["model"])
    start = _as_base_model(Path(demo_learning["out"]) / "train" / "adapter", base, tmp_path / "sft-start")
    task = demo_learning["task"]
    common = [f"model={start}", f"data.train=[{{path: '{corpus}', split: train}}]", f"tasks=[{task}]",
              f"max_steps={STEPS}", "lr=2.0e-4", "warmup_ratio=0.0", "resume=false"]
    sft = train_from_config("tiny_demo", overrides=common + [f"output_dir={tmp_path / 'sft'}"])
    simpo = train_from_config("tiny_demo", overrides=common + [f"output_dir={tmp_path / 'simpo'}", "objective=simpo"])
    m_sft = heldout_margin(start, Path(sft["adapter"]), corpus, task)
    m_simpo = heldout_margin(start, Path(simpo["adapter"]), corpus, task)
    print(f"\nheld-out preference margin (mean r(y+) - r(y-)): SFT {m_sft:.4f}, SimPO+CE {m_simpo:.4f} "
          f"({STEPS} steps each from the same SFT model)")
    assert m_simpo > m_sft
    assert m_simpo > 0
