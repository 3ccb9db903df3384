"""Full-size backbones with random weights, built in memory, for the GPU benchmarks (compute and
memory do not depend on the weights' values).

Why: no weights can be downloaded, yet real-scale cost (memory, step time, decoding throughput at
7B) must be measured; timing does not depend on the weights' values. So the published architectures
are written here as configs (values checked against transformers' config classes and public copies
of the checkpoints' ``config.json``) and instantiated with random weights directly on the target
device in bf16 (``torch.device`` context: no fp32 copy on the CPU). The model is wrapped in the
project's own ``Backbone`` class for its arch, with the tiny tokenizer (real special tokens, real
chat template, ``lmm_apa.models.tiny``) and the real feature extractor settings, so the benchmarks
run OUR code paths: ``apply_adapter``, ``build_batch``, the trainer's loss step, the constrained
decoder.

``scale`` < 1 shrinks depth and width (heads kept at their real head size) for a CPU smoke test;
``scale=1`` is the real architecture. Vocabulary rows stay the real count at full scale (the output
head is a large part of the cost).

Deliberate differences from the real checkpoints, none of which changes the cost per token:
- the tokenizer is the tiny project tokenizer (vocabulary ~3k, the real pre-tokenizer regex, so
  digits split as the real ones do); its token counts for our prompts are printed by the benchmarks;
- Phi-4's LongRoPE factors are all 1.0 (they only rescale rotary frequencies; our sequences are
  far below the 4,096 tokens where the long factors start to apply);
- Phi-4's speech LoRA is not loaded: the benchmarks train a fresh LoRA of the same rank (320) on the
  same modules, which is what fine-tuning the shipped speech LoRA costs.

QLoRA needs the model quantized by bitsandbytes at load time, so ``save_random_model`` writes the
random model + processor files to a folder and the benchmark loads it back with the project's
``load_backbone(..., quantization="4bit")``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from lmm_apa.models.backbones import phi4_mm as _phi4, qwen2_audio as _qwen

# --------------------------------------------------------------------------- published configs

# Qwen/Qwen2-Audio-7B-Instruct config.json (text: Qwen2-7B; audio: Whisper-large-v3 encoder).
QWEN2_AUDIO_TEXT = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=_qwen.SPEC.vocab_size, max_position_embeddings=8192, rms_norm_eps=1e-5,
    rope_theta=10000.0, tie_word_embeddings=False,
)
QWEN2_AUDIO_ENCODER = dict(
    d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120, num_mel_bins=128,
    max_source_positions=1500,  # 30 s of 100 Hz mel frames after the stride-2 conv
)
# microsoft/Phi-4-multimodal-instruct (transformers-native revision): Phi-4-mini text model, a
# 24-block conformer audio encoder (transformers' Phi4MultimodalAudioConfig defaults are the real
# values), a SigLIP vision tower (unused here but loaded, so it counts in memory).
PHI4_TEXT = dict(
    hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=24,
    num_key_value_heads=8, vocab_size=_phi4.SPEC.vocab_size, max_position_embeddings=131072,
    original_max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True,
    partial_rotary_factor=0.75, rope_theta=10000.0,
)
PHI4_AUDIO = dict(
    hidden_size=1024, intermediate_size=1536, num_blocks=24, num_attention_heads=16, ext_pw_out_channel=1024,
    depthwise_separable_out_channel=1024, nemo_conv_channels=1024,
)
PHI4_VISION = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
PHI4_SPEECH_LORA = dict(r=320, alpha=640)  # the checkpoint's speech-lora/adapter_config.json

DEFAULT_LORA = {"qwen2-audio": dict(r=8, alpha=16), "phi4-mm": PHI4_SPEECH_LORA}
ARCHS = ("qwen2-audio", "phi4-mm")

# Speechocean762 (SO762, 5,000 utterances): durations mean 4.0 s, median 3.5 s, max 20.4 s; words per
# second measured on the bundled real sample (80 utterances, 6.3 words / 3.76 s on average).
SO762_MEAN_S, SO762_MEDIAN_S, SO762_MAX_S = 4.0, 3.5, 20.4
SO762_WORDS_PER_SECOND = 1.67


# --------------------------------------------------------------------------- scaling


def scaled(n: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, int(round(n * scale)))


def _heads(n_heads: int, scale: float, multiple: int = 1) -> int:
    h = scaled(n_heads, scale, minimum=2)
    return max(multiple, h - h % multiple)


def _padded_vocab(n_tokens: int, real: int, scale: float) -> int:
    """The real row count at full scale; never fewer rows than the tokenizer has ids."""
    want = real if scale >= 1 else scaled(real, scale)
    return max(want, -(-n_tokens // 64) * 64)


# --------------------------------------------------------------------------- tokenizer / processor


_FILES: dict[str, Path] = {}


def project_processor_files(arch: str, out: Path) -> Path:
    """The project's tiny model folder for ``arch`` (tokenizer with the real special tokens and chat
    template, processor files); the tiny weights in it are never used. Built once per process."""
    from lmm_apa.models.tiny import save_tiny_model

    cached = _FILES.get(arch)
    if cached is not None and (cached / "tokenizer_config.json").is_file():
        return cached
    _FILES[arch] = save_tiny_model(out, arch, seed=0)
    return _FILES[arch]


def _qwen_feature_extractor():
    """Qwen2-Audio's real WhisperFeatureExtractor settings (30 s window, 128 mel bins)."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400, padding_value=0.0,
        return_attention_mask=True,
    )


# --------------------------------------------------------------------------- configs


def qwen2_audio_config(scale: float, tokenizer):
    """The published Qwen2-Audio sizes at ``scale``, built by the tiny models' own config builder."""
    from lmm_apa.models.tiny import qwen2_audio_config as build

    t = dict(QWEN2_AUDIO_TEXT)
    heads = _heads(t["num_attention_heads"], scale)
    head_dim = t["hidden_size"] // t["num_attention_heads"]
    text = dict(
        t,
        hidden_size=heads * head_dim,
        intermediate_size=scaled(t["intermediate_size"], scale, 64),
        num_hidden_layers=scaled(t["num_hidden_layers"], scale, 2),
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=_padded_vocab(len(tokenizer), t["vocab_size"], scale),
    )
    a = dict(QWEN2_AUDIO_ENCODER)
    a_heads = _heads(a["encoder_attention_heads"], scale)
    a_head_dim = a["d_model"] // a["encoder_attention_heads"]
    audio = dict(
        a,
        d_model=a_heads * a_head_dim,
        encoder_layers=scaled(a["encoder_layers"], scale, 2),
        encoder_attention_heads=a_heads,
        encoder_ffn_dim=4 * a_heads * a_head_dim,  # the 30 s window (max_source_positions) at every scale
    )
    return build(tokenizer, text, audio)


def phi4_mm_config(scale: float, tokenizer):
    """The published Phi-4-multimodal sizes at ``scale``, built by the tiny models' own config builder."""
    from lmm_apa.models.tiny import phi4_mm_config as build

    t = dict(PHI4_TEXT)
    head_dim = t["hidden_size"] // t["num_attention_heads"]
    kv = scaled(t["num_key_value_heads"], scale)
    heads = _heads(t["num_attention_heads"], scale, multiple=kv)
    text = dict(
        hidden_size=heads * head_dim,
        intermediate_size=scaled(t["intermediate_size"], scale, 64),
        num_hidden_layers=scaled(t["num_hidden_layers"], scale, 2),
        num_attention_heads=heads,
        num_key_value_heads=kv,
        vocab_size=_padded_vocab(len(tokenizer), t["vocab_size"], scale),
        max_position_embeddings=t["max_position_embeddings"],
        original_max_position_embeddings=t["original_max_position_embeddings"],
        rms_norm_eps=t["rms_norm_eps"],
    )
    a = dict(PHI4_AUDIO)
    a_head_dim = a["hidden_size"] // a["num_attention_heads"]
    a_heads = _heads(a["num_attention_heads"], scale)
    a_hidden = a_heads * a_head_dim
    audio = dict(
        hidden_size=a_hidden,
        intermediate_size=scaled(a["intermediate_size"], scale, 64),
        num_blocks=scaled(a["num_blocks"], scale, 2),
        num_attention_heads=a_heads,
        ext_pw_out_channel=a_hidden,
        depthwise_separable_out_channel=a_hidden,
        nemo_conv_channels=scaled(a["nemo_conv_channels"], scale, 32),
    )
    v = dict(PHI4_VISION)
    v_head_dim = v["hidden_size"] // v["num_attention_heads"]
    v_heads = _heads(v["num_attention_heads"], scale)
    vision = dict(
        hidden_size=v_heads * v_head_dim,
        intermediate_size=scaled(v["intermediate_size"], scale, 64),
        num_hidden_layers=scaled(v["num_hidden_layers"], scale, 2),
        num_attention_heads=v_heads,
    )
    return build(tokenizer, text, audio, vision)


# --------------------------------------------------------------------------- building


def _dtype(name):
    import torch

    return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}[name]


def random_model(arch: str, config, device: str, dtype: str = "bf16", seed: int = 0):
    """Randomly initialised model created directly on ``device`` in ``dtype`` (no CPU fp32 copy)."""
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration
    from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalForCausalLM

    cls = Qwen2AudioForConditionalGeneration if arch == "qwen2-audio" else Phi4MultimodalForCausalLM
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls._from_config(config, dtype=_dtype(dtype))
    text = config.text_config if arch == "qwen2-audio" else config
    eos = text.eos_token_id if isinstance(text.eos_token_id, list) else [text.eos_token_id, text.pad_token_id]
    model.generation_config = GenerationConfig(bos_token_id=text.bos_token_id, eos_token_id=eos,
                                               pad_token_id=text.pad_token_id)
    model.eval()
    return model


def wrap_backbone(arch: str, model, files: Path):
    """The project's ``Backbone`` for ``arch`` around an in-memory model, through the arch module's
    own ``wrap`` (what ``load`` uses on a checkpoint folder)."""
    from transformers import AutoFeatureExtractor, AutoProcessor

    from lmm_apa.models.backbones import phi4_mm, qwen2_audio
    from lmm_apa.models.backbones.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(files)  # the file's pipeline, as load_backbone loads it
    if arch == "qwen2-audio":
        processor = AutoProcessor.from_pretrained(files, tokenizer=tokenizer)
        processor.feature_extractor = _qwen_feature_extractor()
        return qwen2_audio.wrap(model, processor, source="random:qwen2-audio")
    return phi4_mm.wrap(model, tokenizer, AutoFeatureExtractor.from_pretrained(files), processor=None,
                        source="random:phi4-mm")


def build_config(arch: str, scale: float, files: Path):
    from lmm_apa.models.backbones.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(files)
    return qwen2_audio_config(scale, tokenizer) if arch == "qwen2-audio" else phi4_mm_config(scale, tokenizer)


def build_backbone(arch: str, scale: float = 1.0, device: str = "cuda", dtype: str = "bf16", seed: int = 0,
                   workdir: str | Path | None = None):
    """A random-weight ``arch`` backbone at ``scale`` on ``device`` (in memory)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; use one of {', '.join(ARCHS)}")
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lmm-apa-bench-"))
    files = project_processor_files(arch, workdir / f"files-{arch}")
    config = build_config(arch, scale, files)
    return wrap_backbone(arch, random_model(arch, config, device, dtype, seed), files)


def save_random_model(arch: str, scale: float, out: str | Path, dtype: str = "bf16", device: str = "cpu",
                      seed: int = 0) -> Path:
    """Write a random-weight ``arch`` model + processor files to ``out`` so that
    ``load_backbone(out)`` (e.g. with ``quantization="4bit"``) loads it like a checkpoint."""
    import shutil

    from lmm_apa.models.backbones import phi4_mm

    from lmm_apa.models.tiny import save_tiny_model

    out = Path(out)
    files = save_tiny_model(out, arch, seed=0)
    shutil.rmtree(out / phi4_mm.SPEECH_LORA_SUBFOLDER, ignore_errors=True)  # tiny-shaped; not ours
    for f in list(out.glob("*.safetensors")) + list(out.glob("*.safetensors.index.json")):
        f.unlink()
    config = build_config(arch, scale, files)
    model = random_model(arch, config, device, dtype, seed)
    model.save_pretrained(out)
    if arch == "qwen2-audio":  # the real 30 s feature extractor, inside the processor's own files
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(out)
        processor.feature_extractor = _qwen_feature_extractor()
        processor.save_pretrained(out)
    (out / "lmm_apa_tiny.json").unlink(missing_ok=True)
    del model
    return out


# --------------------------------------------------------------------------- SO762-like utterances


def so762_durations(n: int, seed: int = 0) -> np.ndarray:
    """``n`` durations shaped like SO762's: log-normal with median 3.5 s and mean 4.0 s, clipped to
    [1, 20.4] s."""
    sigma = math.sqrt(2 * math.log(SO762_MEAN_S / SO762_MEDIAN_S))
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(SO762_MEDIAN_S), sigma, n), 1.0, SO762_MAX_S)


def make_utterance(uid: str, seconds: float, rng: np.random.Generator, words: int | None = None):
    """A labelled utterance (synthetic labels, marked so) with ``seconds`` of noise audio and
    about SO762's words per second: the ``full`` task's prompt and target have SO762 lengths."""
    from lmm_apa.data import synth
    from lmm_apa.data.schema import Audio, SentenceScores, Utterance, Word

    lexicon = synth.lexicon()
    vocab = sorted(lexicon)
    n_words = words or max(1, int(round(seconds * SO762_WORDS_PER_SECOND)))
    chosen = [vocab[i] for i in rng.integers(0, len(vocab), n_words)]
    word_objs = []
    for w in chosen:
        phones = list(lexicon[w])
        acc = int(rng.integers(5, 11))
        word_objs.append(Word(text=w, phones=phones, accuracy=acc, stress=10 if rng.random() > 0.05 else 5,
                              total=acc, phone_scores=[round(float(rng.integers(0, 11)) / 5, 1) for _ in phones]))
    s = rng.integers(4, 11, 5)
    sentence = SentenceScores(accuracy=int(s[0]), fluency=int(s[1]), prosodic=int(s[2]), completeness=10.0,
                              total=int(s[4]))
    audio = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    return Utterance(id=uid, text=" ".join(chosen), words=word_objs, audio=Audio(array=audio, sampling_rate=16000),
                     sentence=sentence, corpus="bench-random", synthetic=True)


def make_utterances(seconds: list[float] | np.ndarray, seed: int = 0, words: int | None = None):
    rng = np.random.default_rng(seed)
    return [make_utterance(f"bench{i:05d}", float(s), rng, words) for i, s in enumerate(seconds)]


# --------------------------------------------------------------------------- figures


def count_params(module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def device_memory(device: str) -> dict:
    """Peak memory since the last reset (GiB): CUDA allocator figures, or the process RSS peak on CPU."""
    import torch

    if device.startswith("cuda"):
        return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
    import resource

    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _seconds_list(text: str) -> list[float]:
    return [float(x) for x in str(text).split(",") if x.strip()]


def add_common_args(parser, sweep: bool = False) -> None:
    """The options every benchmark takes. ``sweep``: ``--seconds`` is a comma list and
    ``--gradient-checkpointing`` may be ``on`` / ``off`` / ``both``, all run in one process on one
    built model (device time is scarce: the build is paid once)."""
    parser.add_argument("--arch", choices=ARCHS, default="qwen2-audio")
    parser.add_argument("--device", default=None, help="cuda / cuda:N / cpu (default: cuda when available)")
    parser.add_argument("--scale", type=float, default=1.0, help="1 = the real architecture; ~0.01 for a CPU smoke run")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    if sweep:
        parser.add_argument("--seconds", type=_seconds_list, default=[SO762_MEAN_S],
                            help="audio length per utterance (s); a comma list runs each")
    else:
        parser.add_argument("--seconds", type=float, default=SO762_MEAN_S, help="audio length per utterance (s)")
    parser.add_argument("--words", type=int, default=None, help="words per utterance (default: SO762's rate x seconds)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--qlora", action="store_true", help="4-bit NF4 base (bitsandbytes + CUDA)")
    if sweep:
        parser.add_argument("--gradient-checkpointing", nargs="?", const="on", default="off", choices=("off", "on", "both"),
                            help="activation checkpointing of the decoder layers (alone: on; both: each)")
    else:
        parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="scratch folder (QLoRA writes the random model here)")
    parser.add_argument("--json-out", default=None, help="also write the JSON figures to this file")
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads on --device cpu (1: small ops on a shared CPU run far faster single-threaded)")


def resolve_device(device: str | None) -> str:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: no CUDA device is available here (use --device cpu with a small --scale)")
    return device


def check_qlora(device: str) -> None:
    """A clear message before anything is built: QLoRA needs CUDA and bitsandbytes."""
    import importlib.util

    if not device.startswith("cuda"):
        raise SystemExit("--qlora needs a CUDA device and bitsandbytes (4-bit NF4 weights); run it on a GPU machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SystemExit("--qlora needs bitsandbytes: pip install 'lmm-apa[gpu]' (or carry its wheel, see benchmarks/README.md)")


def print_table(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print(f"| {'figure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.4g}"
        print(f"| {k.ljust(width)} | {v} |")


def prepare_run(args, prefix: str) -> tuple[str, str, Path]:
    """What both GPU benchmarks do first: pick the device (QLoRA checked there), cap CPU threads,
    choose the dtype (bf16-class on CUDA, fp32 on CPU) and a work folder. Returns (device, dtype, workdir)."""
    device = resolve_device(args.device)
    if args.qlora:
        check_qlora(device)
    import torch

    if device == "cpu":
        torch.set_num_threads(args.cpu_threads)
    dtype = args.dtype if device.startswith("cuda") else "fp32"
    return device, dtype, Path(args.workdir or tempfile.mkdtemp(prefix=prefix))


def random_backbone(args, device: str, dtype: str, workdir: Path):
    """The random-weight backbone both GPU benchmarks time: built in memory, or for ``--qlora`` saved
    to ``workdir`` and loaded back 4-bit through the project's ``load_backbone`` (quantisation happens
    on load)."""
    if not args.qlora:
        return build_backbone(args.arch, args.scale, device, dtype, args.seed, workdir)
    import torch

    from lmm_apa.models.backbones import load_backbone

    path = save_random_model(args.arch, args.scale, workdir / f"random-{args.arch}", dtype=dtype, device=device,
                             seed=args.seed)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return load_backbone(path, arch=args.arch, dtype="bfloat16", device=device, quantization="4bit")

