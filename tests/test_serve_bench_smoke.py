"""Smoke run of benchmarks/bench_serve.py with tiny bounds: the script starts the real server on
loopback, gets answers with batching on and off, survives the hostile uploads, and reports honest
figures (the speed figures themselves belong in benchmarks/RESULTS.md, not here)."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

pytestmark = pytest.mark.slow  # two server starts: about a minute on 2 shared cores


def test_bench_serve_smoke(tmp_path, tiny_qwen2_audio):
    import bench_serve

    out = tmp_path / "serve.jsonl"
    rows = bench_serve.main(["--model", str(tiny_qwen2_audio), "--clients", "2", "--batching", "2,1", "--requests", "2",
                             "--time-limit", "240", "--hostile-parallel", "1", "--json-out", str(out)])
    load = [r for r in rows if "clients" in r]
    assert {(r["clients"], r["max_batch"]) for r in load} == {(2, 2), (2, 1)}
    for r in load:
        assert r["answered"] == 2 and r["errors"] == 0 and r["unfinished"] == 0, r
        assert r["requests_per_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"]
        assert 100 < r["peak_rss_mib"] < 4096
    hostile = [r for r in rows if "hostile" in r]
    assert len(hostile) == 1
    for what, statuses in hostile[0]["hostile"].items():
        assert all(s in ("413", "415", "422") or not s.isdigit() for s in statuses), (what, statuses)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
