"""Smoke runs of the GPU benchmarks at a tiny ``--scale`` on the CPU: the same scripts a GPU session
runs at full size (benchmarks/README.md), checked for honest figures, not for speed."""

import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

pytestmark = pytest.mark.slow  # ~30 s together on 2 shared cores

SMALL = ["--device", "cpu", "--scale", "0.01", "--seconds", "1", "--words", "1"]


def _last_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def train_figures(tmp_path_factory):
    import bench_gpu_train

    out = tmp_path_factory.mktemp("bench") / "train.jsonl"
    runs = bench_gpu_train.main(SMALL + ["--steps", "1", "--warmup", "1", "--gradient-checkpointing", "both",
                                         "--json-out", str(out)])
    return runs, out


@pytest.fixture(scope="module")
def decode_figures():
    import bench_gpu_decode

    return bench_gpu_decode.main(SMALL + ["--utterances", "1", "--batch-size", "1", "--steps", "1", "--lookahead", "0"])


def test_train_smoke_runs_our_step_and_reports_finite_figures(train_figures):
    runs, out = train_figures
    assert [r["gradient_checkpointing"] for r in runs] == [False, True]
    figures = runs[0]
    assert figures["steps_timed"] == 1
    # one loss per optimizer step (warm-up included), each the answer-token CE of a random model:
    # close to ln(vocabulary), i.e. computed over the answer only and not a constant or NaN
    assert len(figures["losses"]) == 2
    vocab_ln = math.log(3072)
    assert all(math.isfinite(x) and abs(x - vocab_ln) < 1.5 for x in figures["losses"]), figures["losses"]
    for key in ("step_s_median", "tokens_per_s", "peak_rss_gib", "model_tflop_per_step_counted", "mfu"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    # the counted FLOPs agree with the 4N-per-token LoRA estimate (attention, norms make the rest)
    ratio = figures["model_tflop_per_step_counted"] / figures["model_tflop_per_step_analytic"]
    assert 0.8 < ratio < 1.5, ratio
    assert 0 < figures["params_trainable"] < figures["params_total"] / 10  # LoRA only
    assert figures["audio_tokens_per_step"] == 25  # 1 s of audio = 25 Qwen2-Audio tokens
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["step_s_median"] for line in lines] == [r["step_s_median"] for r in runs]


def test_train_smoke_checkpointing_runs_and_its_recompute_is_not_counted_as_model_flops(train_figures):
    off, on = train_figures[0]
    assert on["steps_timed"] == 1 and all(math.isfinite(x) for x in on["losses"])
    # model FLOPs are counted with checkpointing off in both runs (MFU, not HFU): same batch, same count
    assert on["model_tflop_per_step_counted"] == pytest.approx(off["model_tflop_per_step_counted"], rel=1e-6)


def test_decode_smoke_constrained_parses_everything_with_one_pass_per_slot(decode_figures):
    import full_size as fs

    from lmm_apa.prompts.tasks import get_task

    res = decode_figures["results"]
    assert set(res) == {"constrained", "free"}
    c, f = res["constrained"]["throughput"], res["free"]["throughput"]
    assert c["errors"] == 0 and f["errors"] == 0, (c["first_error"], f["first_error"])
    assert c["parse_ok"] == c["utterances"] == 1
    # the timed utterance is rebuilt from the same seed: prefill + exactly one forward per score slot
    utt = fs.make_utterances(fs.so762_durations(1, seed=0), seed=0, words=1)[0]
    assert c["forward_passes"] == 1 + len(get_task("full").template(utt).slots)
    assert f["forward_passes"] > c["forward_passes"]  # free decoding: one pass per generated token
    for r in res.values():
        assert r["latency"]["median_s"] > 0 and r["latency"]["error"] is None
        assert math.isfinite(r["throughput"]["projected_2500_s"]) and r["throughput"]["projected_2500_s"] > 0
    assert res["constrained"]["latency"]["parse_ok"]
    assert decode_figures["peak_rss_gib"] > 0


def test_qlora_without_cuda_says_what_it_needs():
    import bench_gpu_train

    with pytest.raises(SystemExit, match="CUDA"):
        bench_gpu_train.main(["--device", "cpu", "--qlora", "--scale", "0.01"])


def test_full_scale_configs_match_the_published_sizes():
    """The full-size architectures, built on the meta device (no memory): Qwen2-Audio-7B-Instruct
    is 8.4 B parameters (7.1 B language model + 0.64 B Whisper-large-v3 encoder), Phi-4-multimodal's
    base (text + audio + vision, no LoRAs) 4.7 B."""
    import tempfile

    import full_size as fs

    with tempfile.TemporaryDirectory() as tmp:
        sizes = {}
        for arch in fs.ARCHS:
            files = fs.project_processor_files(arch, Path(tmp) / arch)
            model = fs.random_model(arch, fs.build_config(arch, 1.0, files), "meta")
            sizes[arch] = fs.count_params(model)
            if arch == "qwen2-audio":
                assert fs.count_params(model.model.audio_tower) == pytest.approx(637e6, rel=0.01)
                assert model.config.text_config.vocab_size == 156032
            else:
                assert model.config.num_key_value_heads == 8 and model.config.hidden_size == 3072
    assert sizes["qwen2-audio"] == pytest.approx(8.397e9, rel=0.005)
    assert sizes["phi4-mm"] == pytest.approx(4.744e9, rel=0.005)


def test_decode_step_curve_runs_and_the_cache_is_restored(tiny_qwen2_audio):
    """bench_decode_step: every (batch, query tokens) point is timed on the same cached prompt (the
    chunk is cropped off again after each forward, else later points would see a longer past)."""
    import bench_decode_step

    rows = bench_decode_step.main(["--model", str(tiny_qwen2_audio), "--past", "40", "--batch", "1,2",
                                   "--queries", "1,5", "--repeats", "2"])
    assert [(r["batch"], r["query_tokens"]) for r in rows] == [(1, 1), (1, 5), (2, 1), (2, 5)]
    assert all(math.isfinite(r["ms"]) and r["ms"] > 0 for r in rows)
