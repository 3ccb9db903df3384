"""Can the tiny model learn WHERE in a reading an error is? Pretraining stages before the `full` recipe.

Why: the `full` proof's phone goal (PCC >= 0.6) is above what a model that hears only HOW MUCH of a
reading is wrong can reach on most seeds (``bench_learning.py``'s ``*_ceiling`` columns), and the
tiny model trained from random weights scores a reading's phones alike (``*_within`` ~0). The real
backbones arrive pretrained on speech; this benchmark gives the tiny Qwen2-Audio model the same kind
of start and measures whether the `full` recipe then localises. Stages, each optional:

1. ``--ctc-epochs``: the audio encoder learns to recognise the synthetic phones (CTC on what was said:
   ``Word.said_phones``, the phones the `mdd` task transcribes; a linear head, kept in
   ``ctc_head.pt``), as Qwen2-Audio's Whisper encoder learned speech before the language model saw
   it. Prints the encoder's held-out phone error rate (greedy CTC).
2. ``--asr-epochs``: the whole model learns Ahn & Nam 2025's ``mdd`` transcription (what was said, no
   reference text) on the same pretraining corpus. Its ``--pre-texts`` reading texts are drawn afresh
   (the recipes' corpora have 40), so the model must read the audio in order instead of recognising
   one of a few sentences. Prints the held-out PER / WER.
3. The `full` recipe (``lmm_apa.demo.run_demo``, full fine-tuning) from the pretrained model, on the
   seed's own corpus: held-out PCCs, ``bench_learning.localisation``'s columns, where the phone-score
   slots attend (``attention_at_phone_slots``; ``attention_start``: the start model's, a baseline),
   and whether the encoder still recognises phones afterwards (``encoder_per_after_full``: through
   the CTC head; ``probe_per_after_full``: a new head on the frozen encoder).

Runs on the CPU (the tiny models; every model is loaded with ``device="cpu"``).

The pretraining corpus is another synthetic corpus (seed ``1000 + seed``: other speakers, other texts);
the recipe's held-out readings are never trained on.

    python benchmarks/bench_localisation.py --seed 0 [--ctc-epochs 6] [--asr-epochs 16]
        [--pre-utterances 2000] [--pre-texts 2000] [--set key=value ...] [--threads 1] --work DIR
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

from bench_learning import localisation

PRE_SEED_OFFSET = 1000


def _collapse(ids: list[int]) -> list[int]:
    """Greedy CTC: merge repeats, drop blanks (0)."""
    return [t for j, t in enumerate(ids) if t and (j == 0 or t != ids[j - 1])]


def encoder_padding_mask(encoder, input_features, feature_attention_mask):
    """The attention mask Qwen2-Audio's own forward gives its encoder (transformers'
    ``Qwen2AudioModel.forward``): padded frames of the fixed window are not attended to, so the CTC
    stage trains the encoder as the full model will run it."""
    import torch
    from transformers.masking_utils import create_bidirectional_mask

    lengths, _ = encoder._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
    frames = (input_features.shape[-1] - 2) // 2 + 1
    keep = (torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return create_bidirectional_mask(config=encoder.config, inputs_embeds=torch.zeros(len(keep), frames, 1),
                                     attention_mask=keep)


class EncoderCTC:
    """The tiny model's audio encoder with a linear phone head, trained with torch's CTC loss."""

    def __init__(self, backbone, corpus: Path, lr: float = 2e-3, head: dict | None = None, train_encoder: bool = True):
        import torch

        from lmm_apa.data.audio import load_audio
        from lmm_apa.data.corpus import load_corpus

        self.backbone, self.encoder = backbone, backbone.model.model.audio_tower
        self.train = list(load_corpus(corpus, split="train").utterances)
        self.test = list(load_corpus(corpus, split="test").utterances)
        self.phones = sorted({p for u in self.train for p in self.said(u)})
        self.wavs = {u.id: load_audio(u.audio) for u in self.train + self.test}
        self.head = torch.nn.Linear(self.encoder.config.d_model, len(self.phones) + 1)  # 0: blank
        if head is not None:  # a trained head (``ctc_stage``'s ``ctc_head.pt``): the same phone set
            if head["phones"] != self.phones:
                raise ValueError(f"{corpus}: its phones differ from the CTC head's ({len(head['phones'])} phones)")
            self.head.load_state_dict(head["state"])
        for p in self.encoder.parameters():  # False: a linear probe of what the encoder already hears
            p.requires_grad_(train_encoder)
        self.encoder.embed_positions.requires_grad_(False)  # frozen in the architecture
        self.params = [p for p in [*self.encoder.parameters(), *self.head.parameters()] if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr)

    @staticmethod
    def said(utt) -> list[str]:
        """The CTC target: the phones said, as the `mdd` task's answer transcribes them (labels, MDD
        phone convention: substitutions as the phone said, deletions left out)."""
        return [p for w in utt.words for p in w.said_phones()]

    def _encode(self, utts):
        import torch

        features, n_tokens = self.backbone.audio_inputs([self.wavs[u.id] for u in utts])
        mask = encoder_padding_mask(self.encoder, features["input_features"], features["feature_attention_mask"])
        hidden = self.encoder(features["input_features"], attention_mask=mask).last_hidden_state
        return hidden, torch.tensor(n_tokens)

    def _loss(self, utts):
        import torch

        hidden, n_tokens = self._encode(utts)
        log_probs = self.head(hidden).log_softmax(-1).transpose(0, 1)
        index = {p: i + 1 for i, p in enumerate(self.phones)}
        targets = [torch.tensor([index[p] for p in self.said(u) if p in index]) for u in utts]
        return torch.nn.functional.ctc_loss(log_probs, torch.cat(targets), n_tokens,
                                            torch.tensor([len(t) for t in targets]), zero_infinity=True)

    def fit(self, epochs: int, batch: int = 16, seed: int = 0) -> list[float]:
        """Train; the held-out PER after each epoch."""
        import torch

        if epochs < 1 or len(self.train) < batch:
            raise ValueError(f"CTC stage: needs epochs >= 1 (got {epochs}) and at least {batch} training "
                             f"readings (the corpus has {len(self.train)})")
        steps = epochs * (len(self.train) // batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, self.optimizer.param_groups[0]["lr"],
                                                       total_steps=steps, pct_start=0.1)
        order, pers = list(self.train), []
        random.Random(seed).shuffle(order)
        for epoch in range(epochs):
            self.encoder.train()
            for i in range(0, len(order) - batch + 1, batch):
                loss = self._loss(order[i:i + batch])
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.optimizer.step()
                schedule.step()
            pers.append(self.per())
            print(f"  encoder CTC epoch {epoch + 1}/{epochs}: held-out PER {pers[-1]:.3f}", flush=True)
            random.Random(seed + epoch + 1).shuffle(order)
        return pers

    def per(self) -> float:
        """Held-out phone error rate of greedy CTC decoding (an empty hypothesis counts as all deleted)."""
        import torch

        from lmm_apa.evaluate.metrics import error_rate

        self.encoder.eval()
        refs, hyps = [], []
        with torch.no_grad():
            for i in range(0, len(self.test), 16):
                utts = self.test[i:i + 16]
                hidden, n_tokens = self._encode(utts)
                for u, row, n in zip(utts, self.head(hidden).argmax(-1), n_tokens):
                    hyps.append([self.phones[t - 1] for t in _collapse(row[:n].tolist())])
                    refs.append(self.said(u))
        return error_rate(refs, hyps)["rate"]


def pretraining_corpus(work: Path, seed: int, utterances: int, texts: int) -> Path:
    """Another synthetic corpus (seed ``1000 + seed``) with ``texts`` reading texts; written once."""
    from lmm_apa.data.synth import write_synthetic_corpus

    corpus = work / f"pretraining-corpus-{utterances}x{texts}-seed{PRE_SEED_OFFSET + seed}"
    if not (corpus / "resource" / "scores.json").exists():
        write_synthetic_corpus(corpus, n_utterances=utterances, seed=PRE_SEED_OFFSET + seed, test_fraction=0.05,
                               n_texts=texts)
    return corpus


def _model_folder(base: str | Path, weights: Path, out: Path) -> str:
    """A loadable model folder: ``base``'s tokenizer and processor files with ``weights`` (a full
    fine-tune's adapter holds the whole model's weights, not the processor)."""
    shutil.copytree(base, out, dirs_exist_ok=True)
    shutil.copy(weights, out / "model.safetensors")
    return str(out)


def ctc_stage(model: str, corpus: Path, epochs: int, out: Path, seed: int) -> tuple[str, dict]:
    """The encoder CTC stage; a model folder with the trained encoder, and its head in
    ``ctc_head.pt`` (for ``encoder_per``: does the encoder still recognise phones after `full`?)."""
    import torch

    from lmm_apa.models.backbones import load_backbone

    backbone = load_backbone(model, device="cpu")
    t0 = time.perf_counter()
    stage = EncoderCTC(backbone, corpus)
    pers = stage.fit(epochs, seed=seed)
    shutil.copytree(model, out, dirs_exist_ok=True)
    backbone.model.save_pretrained(out)
    torch.save({"phones": stage.phones, "state": stage.head.state_dict()}, out / "ctc_head.pt")
    return str(out), {"ctc_epochs": epochs, "ctc_per": round(pers[-1], 3), "ctc_s": round(time.perf_counter() - t0)}


def encoder_per(model: str, head_file: Path, corpus: Path) -> float:
    """Held-out PER of ``model``'s encoder read through the CTC stage's head."""
    import torch

    from lmm_apa.models.backbones import load_backbone

    return round(EncoderCTC(load_backbone(model, device="cpu"), corpus, head=torch.load(head_file)).per(), 3)


def probe_per(model: str, corpus: Path, epochs: int = 4, seed: int = 0) -> float:
    """Held-out PER of a new CTC head trained on ``model``'s frozen encoder: whether its audio tokens
    still tell the phones apart, whatever the CTC stage's own head now reads from them. Seeded on its
    own, so the figure does not depend on what ran before it."""
    import torch

    from lmm_apa.models.backbones import load_backbone

    torch.manual_seed(seed)
    probe = EncoderCTC(load_backbone(model, device="cpu"), corpus, train_encoder=False)
    return round(probe.fit(epochs, seed=seed)[-1], 3)


def asr_stage(model: str, corpus: Path, epochs: int, out: Path, lr: float, seed: int) -> tuple[str, dict]:
    """``mdd`` training on the pretraining corpus (fresh, never resumed); the held-out PER / WER of
    60 readings."""
    from lmm_apa.evaluate.run import evaluate_predictions
    from lmm_apa.infer.predict import predict_corpus
    from lmm_apa.train.run import train_from_config

    t0 = time.perf_counter()
    summary = train_from_config("tiny_demo", overrides=[
        f"model={model}", f"data.train=[{{path: '{corpus}', split: train}}]", "tasks=[mdd]", f"epochs={epochs}",
        f"lr={lr}", f"seed={seed}", "resume=false", f"output_dir={out / 'train'}"])
    folder = _model_folder(model, Path(summary["adapter"]) / "model.safetensors", out / "model")
    preds = out / "predictions.jsonl"
    preds.unlink(missing_ok=True)
    predict_corpus(corpus, model=folder, task="mdd", split="test", limit=60, out=preds, progress=False)
    mdd = evaluate_predictions(preds, corpus, split="test")["mdd"]
    return folder, {"asr_epochs": epochs, "asr_steps": summary.get("global_step"), "asr_per": round(mdd["per"], 3),
                    "asr_wer": round(mdd["wer"], 3), "asr_s": round(time.perf_counter() - t0)}


def _phone_slots(tokenizer, ids, labels) -> list[int]:
    """Positions that predict a phone score: the ``/`` tokens after ``Phone Scores:`` in the answer
    (the answer's last line, so the word scores' ``/`` come before it). Token by token, as the tiny
    models' byte-level tokenizers decode (a SentencePiece vocabulary would need whole-span decoding)."""
    start = int((labels != -100).nonzero()[0])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    text = ""
    for i in range(start, len(ids)):
        text += tokenizer.convert_tokens_to_string([tokens[i]])
        if "Phone Scores:" in text:
            return [j for j in range(i, len(ids) - 1) if tokens[j].endswith("/")]
    raise ValueError("the answer has no 'Phone Scores:' line (is the task `full`?)")


def _rounded(x: float) -> float | None:
    return None if x != x else round(float(x), 3)  # NaN (e.g. a constant centroid) -> None, valid JSON


def attention_at_phone_slots(model: str, adapter: str | None, corpus: Path, n: int = 20) -> dict:
    """Where the phone-score slots look, per layer (heads averaged), over ``n`` held-out readings:
    ``audio_mass``, the mean share of attention on audio tokens; ``order_rho``, the mean (and s.d.)
    over readings of Spearman's correlation between a slot's place among the reading's phones and
    its attention centroid over the audio (a model that reads phone k at the k-th stretch of audio:
    near 1). Without ``adapter``, ``model`` as it is: the baseline a start's positional drift gives."""
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from lmm_apa.data.audio import load_audio
    from lmm_apa.data.corpus import load_corpus
    from lmm_apa.models.loading import load_model
    from lmm_apa.prompts.tasks import TASKS

    backbone = load_model(model, adapter, device="cpu")
    backbone.model.eval()
    backbone.model.set_attn_implementation("eager")  # attention weights are returned by eager only
    audio_id = backbone.tokenizer.convert_tokens_to_ids(backbone.audio_token)
    mass, rho = {}, {}
    for utt in list(load_corpus(corpus, split="test").utterances)[:n]:
        batch = backbone.build_batch([load_audio(utt.audio)], [TASKS["full"].instruction(utt)],
                                     [TASKS["full"].target(utt)])
        with torch.no_grad():
            out = backbone.model(**{k: v for k, v in batch.items() if k != "labels"}, output_attentions=True)
        ids, audio = batch["input_ids"][0], (batch["input_ids"][0] == audio_id).nonzero().flatten()
        slots = _phone_slots(backbone.tokenizer, ids, batch["labels"][0])
        for layer, att in enumerate(out.attentions):
            on_audio = att[0].mean(0)[slots][:, audio]  # (slots, audio tokens)
            centroids = (on_audio * torch.arange(len(audio))).sum(-1) / on_audio.sum(-1)
            mass.setdefault(layer, []).extend(on_audio.sum(-1).tolist())
            if len(slots) >= 4:
                rho.setdefault(layer, []).append(spearmanr(range(len(slots)), centroids.tolist())[0])
    return {f"layer{layer}": {"audio_mass": _rounded(np.mean(mass[layer])),
                              "order_rho": _rounded(np.nanmean(rho.get(layer, [np.nan]))),
                              "order_rho_sd": _rounded(np.nanstd(rho.get(layer, [np.nan])))} for layer in mass}


def _settings_name(args) -> str:
    """The run's folder: every setting that changes it, so a rerun never picks up another's files."""
    import hashlib

    name = (f"seed{args.seed}-ctc{args.ctc_epochs}-asr{args.asr_epochs}-lr{args.asr_lr:g}"
            f"-pre{args.pre_utterances}x{args.pre_texts}")
    return name + (f"-set{hashlib.sha1(repr(args.set).encode()).hexdigest()[:8]}" if args.set else "")


def run(args) -> dict:
    """The stages the arguments ask for, then the `full` recipe; one flat row of figures."""
    import torch

    from lmm_apa.demo import RECIPES, TINY_AUDIO_SECONDS
    from lmm_apa.models.tiny import save_tiny_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = args.work / _settings_name(args)
    model = str(save_tiny_model(work / "tiny", arch=RECIPES["full"].arch, seed=args.seed,
                                audio_seconds=TINY_AUDIO_SECONDS))
    row, head = {"seed": args.seed}, None
    if args.ctc_epochs or args.asr_epochs:
        pre = pretraining_corpus(args.work, args.seed, args.pre_utterances, args.pre_texts)
        row.update(pre_utterances=args.pre_utterances, pre_texts=args.pre_texts)
        if args.ctc_epochs:
            model, figures = ctc_stage(model, pre, args.ctc_epochs, work / "ctc-model", args.seed)
            row.update(figures)
            head = Path(model) / "ctc_head.pt"
        if args.asr_epochs:
            model, figures = asr_stage(model, pre, args.asr_epochs, work / "asr", args.asr_lr, args.seed)
            row.update(figures)
        if head is not None:
            row["encoder_per_start"] = encoder_per(model, head, pre)
    row |= _full_stage(model, work, args)
    if head is not None:
        row["encoder_per_after_full"] = encoder_per(row["full_model"], head, pre)
        row["probe_per_after_full"] = probe_per(row["full_model"], pre, seed=args.seed)
    return row


def _full_stage(model: str, work: Path, args) -> dict:
    """The `full` recipe from ``model``. Through ``overrides`` (``model=``), not ``run_demo(model=)``,
    which would switch to the real-backbone config; ``run_demo`` still builds (and its report names)
    its own random tiny model, unused. Its trained adapter is the whole model (full fine-tuning)."""
    from lmm_apa.demo import run_demo

    r = run_demo(work / "full", seed=args.seed, recipe="full", overrides=[f"model={model}", *args.set])
    corpus, adapter = Path(r["out"]) / "synthetic-corpus", Path(r["out"]) / "train" / "adapter"
    pcc = r["accuracy_pcc"]
    full_model = _model_folder(model, adapter / "model.safetensors", work / "full-model")
    return {"start_model": model, "full_model": full_model,
            "steps": r["steps"], "sentence": pcc["sentence"], "word": pcc["word"], "phone": pcc["phone"],
            "silenced": r["sentence_accuracy_pcc"]["silenced"], "full_train_s": r["timings"]["train_s"],
            **localisation(Path(r["predictions"]), corpus),
            "attention": attention_at_phone_slots(model, str(adapter), corpus),
            "attention_start": attention_at_phone_slots(model, None, corpus)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ctc-epochs", type=int, default=6, help="encoder CTC pretraining epochs (0: none)")
    ap.add_argument("--asr-epochs", type=int, default=0, help="mdd transcription pretraining epochs (0: none)")
    ap.add_argument("--asr-lr", type=float, default=2e-3)
    ap.add_argument("--pre-utterances", type=int, default=2000, help="pretraining corpus size")
    ap.add_argument("--pre-texts", type=int, default=2000, help="reading texts in the pretraining corpus")
    ap.add_argument("--set", action="append", default=[], help="override of the `full` recipe (key=value)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=None, help="append the row here")
    args = ap.parse_args(argv)
    for name in ("ctc_epochs", "asr_epochs"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0")
    if any(item.replace(" ", "").startswith("method=") and item.replace(" ", "") != "method=full" for item in args.set):
        ap.error("--set method=...: the stages read the whole model from the trained adapter, so `full` "
                 "must stay full fine-tuning (method=full)")
    t0 = time.perf_counter()
    row = run(args) | {"wall_s": round(time.perf_counter() - t0)}
    print(json.dumps(row))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main()
