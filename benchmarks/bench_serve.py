"""Load benchmark of ``lmm-apa serve`` on loopback: 1, 8 and 32 concurrent learners, with dynamic
batching on (``--max-batch 16``, the server's default) and off (``--max-batch 1``), in one run so the
ratio is measured under the same load; then a hostile phase (oversized, lying and decode-bomb uploads) to check that the
server's memory stays bounded whatever is uploaded.

Each configuration starts its own server (the real ``lmm-apa serve`` command, on 127.0.0.1 only) with
the tiny Qwen2-Audio-architecture model, sends a bounded number of requests (``--requests``) and
stops at ``--time-limit`` seconds whatever happens. A client told 503 (queue full) waits for
Retry-After and tries again: 503s are counted, not errors. Printed: requests/s, p50/p95 latency of
the answered requests, errors, 503s, the server's peak RSS. One JSON line per configuration, then a
Markdown table (for benchmarks/RESULTS.md).

    python benchmarks/bench_serve.py                     # the figures in RESULTS.md
    python benchmarks/bench_serve.py --clients 1 --requests 2 --time-limit 60 --no-hostile   # smoke
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_WAV = REPO.parent / "shared" / "data" / "speechocean762-mini" / "WAVE" / "SPEAKER0457" / "004570167.WAV"
REAL_TEXT = "About to go to lunch."
HOST = "127.0.0.1"  # loopback only, always


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    p.add_argument("--batching", default="16,1", help="comma-separated --max-batch values (1 = off)")
    p.add_argument("--requests", type=int, default=32, help="answered requests wanted per configuration")
    p.add_argument("--queue-size", type=int, default=32)
    p.add_argument("--time-limit", type=float, default=240.0, help="seconds per configuration, at most")
    p.add_argument("--model", default=None, help="model path (default: a tiny Qwen2-Audio saved to a temp dir)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    p.add_argument("--no-hostile", action="store_true", help="skip the hostile-upload memory phase")
    p.add_argument("--hostile-parallel", type=int, default=8, help="copies of each hostile upload sent at once")
    p.add_argument("--json-out", default=None)
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``lmm-apa serve`` in a subprocess, with its peak RSS sampled every 50 ms."""

    def __init__(self, model: str, max_batch: int, queue_size: int, threads: int):
        self.port = free_port()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), LMM_APA_API_KEY="")
        cmd = [sys.executable, "-m", "lmm_apa.cli", "serve", "--host", HOST, "--port", str(self.port), "--model", model,
               "--device", "cpu", "--max-batch", str(max_batch), "--queue-size", str(queue_size), "--timeout", "600"]
        # uvicorn logs every request: a pipe nobody reads until exit would fill and block the server
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _sample(self):
        import psutil

        proc = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read().decode(errors='replace')[-2000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready in time")

    def stop(self) -> None:
        self._stop.set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def recording() -> tuple[bytes, str]:
    if REAL_WAV.exists():
        return REAL_WAV.read_bytes(), REAL_TEXT
    import soundfile as sf

    t = np.arange(int(2.0 * 16000)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue(), "We call it bear."


def load_phase(url: str, clients: int, total: int, time_limit: float) -> dict:
    """``clients`` threads share ``total`` requests; 503 -> wait Retry-After (capped) and retry."""
    import httpx

    audio, text = recording()
    lock = threading.Lock()
    counts = {"left": total, "ok": 0, "errors": 0, "busy": 0, "error_samples": []}
    latencies: list[float] = []
    end = time.monotonic() + time_limit

    def client():
        with httpx.Client(timeout=max(1.0, time_limit)) as c:
            while time.monotonic() < end:
                with lock:
                    if counts["left"] <= 0:
                        return
                    counts["left"] -= 1
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    try:
                        r = c.post(url + "/assess", files={"audio": ("learner.wav", audio, "audio/wav")},
                                   data={"text": text}, timeout=max(1.0, end - t0))
                    except httpx.HTTPError as e:
                        with lock:
                            counts["errors"] += 1
                            counts["error_samples"].append(type(e).__name__)
                        break
                    if r.status_code == 503:
                        with lock:
                            counts["busy"] += 1
                        time.sleep(min(float(r.headers.get("retry-after", 1)), 0.5))
                        continue
                    with lock:
                        if r.status_code == 200:
                            counts["ok"] += 1
                            latencies.append(time.monotonic() - t0)
                        else:
                            counts["errors"] += 1
                            counts["error_samples"].append(f"{r.status_code}: {r.text[:100]}")
                    break

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    wall = time.monotonic() - started
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"answered": counts["ok"], "unfinished": max(0, counts["left"]), "wall_s": round(wall, 2),
            "requests_per_s": round(counts["ok"] / wall, 3), "p50_s": round(float(np.nanpercentile(lat, 50)), 2),
            "p95_s": round(float(np.nanpercentile(lat, 95)), 2), "errors": counts["errors"], "busy_503": counts["busy"],
            "error_samples": counts["error_samples"][:5]}


def hostile_uploads() -> list[tuple[str, object, dict]]:
    """(what, body, headers): a 200 MB stream with no Content-Length, a lying Content-Length, an
    8-channel 192 kHz 120 s FLAC (a decode bomb), a 19 MB WAV over the duration limit."""
    import soundfile as sf

    def stream(total=200 * 1024 * 1024, chunk=1024 * 1024):
        head = (b"--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"big.wav\"\r\n"
                b"Content-Type: audio/wav\r\n\r\n")
        yield head
        for _ in range(total // chunk):
            yield b"\0" * chunk

    bomb = io.BytesIO()
    with sf.SoundFile(bomb, "w", samplerate=192_000, channels=8, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((192_000, 8), dtype=np.int16)
        block[0, 0] = 3
        for _ in range(120):
            f.write(block)
    long_wav = io.BytesIO()
    sf.write(long_wav, (0.1 * np.random.default_rng(0).standard_normal(48_000 * 100)).astype(np.float32)[:, None]
             .repeat(1, axis=1), 48_000, format="WAV", subtype="PCM_32")
    return [("200 MB stream", stream, {"content-type": "multipart/form-data; boundary=B"}),
            ("decode bomb FLAC", bomb.getvalue(), {}), ("19 MB WAV, 100 s", long_wav.getvalue(), {})]


def hostile_phase(url: str, parallel: int = 8) -> dict:
    """``parallel`` copies of each hostile upload at once; every answer must be a 4xx refusal."""
    import httpx

    statuses: dict[str, list] = {}
    for what, body, headers in hostile_uploads():
        def send(_):
            try:
                if callable(body):
                    r = httpx.post(url + "/assess", content=body(), headers=headers, timeout=120)
                else:
                    r = httpx.post(url + "/assess", files={"audio": ("x.flac", body, "audio/flac")},
                                   data={"text": REAL_TEXT}, timeout=120)
                return r.status_code
            except httpx.HTTPError as e:  # the server may close an over-limit stream: that is a refusal too
                return type(e).__name__
        with ThreadPoolExecutor(parallel) as pool:
            statuses[what] = sorted(set(map(str, pool.map(send, range(parallel)))))
    return statuses


def run(args) -> list[dict]:
    model = args.model
    tmp = None
    if model is None:
        from lmm_apa.models.tiny import save_tiny_model

        tmp = tempfile.TemporaryDirectory()
        model = str(save_tiny_model(Path(tmp.name) / "tiny-qwen2-audio", arch="qwen2-audio", seed=0))
    rows = []
    clients = [int(c) for c in args.clients.split(",")]
    for max_batch in [int(b) for b in args.batching.split(",")]:
        server = Server(model, max_batch, args.queue_size, args.threads)
        try:
            server.wait_ready()
            load_phase(server.url, 1, 1, args.time_limit)  # warm-up (first-call costs)
            for n in clients:
                row = {"clients": n, "max_batch": max_batch, **load_phase(server.url, n, max(args.requests, n),
                                                                         args.time_limit)}
                row["peak_rss_mib"] = round(server.peak_rss / 2**20, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
            if not args.no_hostile and max_batch == int(args.batching.split(",")[0]):
                row = {"hostile": hostile_phase(server.url, args.hostile_parallel), "max_batch": max_batch,
                       "peak_rss_mib": round(server.peak_rss / 2**20, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.stop()
    if tmp is not None:
        tmp.cleanup()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| clients | max batch | answered | req/s | p50 s | p95 s | errors | 503s | server peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "clients" in r:
            lines.append(f"| {r['clients']} | {r['max_batch']} | {r['answered']} | {r['requests_per_s']} | {r['p50_s']} "
                         f"| {r['p95_s']} | {r['errors']} | {r['busy_503']} | {r['peak_rss_mib']} |")
    speedups = []
    for n in sorted({r["clients"] for r in rows if "clients" in r}):
        by = {r["max_batch"]: r for r in rows if r.get("clients") == n}
        if 1 in by and len(by) > 1:
            best = max(b for b in by if b != 1)
            if by[1]["requests_per_s"]:
                speedups.append(f"{n} clients: batching x{by[best]['requests_per_s'] / by[1]['requests_per_s']:.2f}")
    return "\n".join(lines + ([""] + speedups if speedups else []))


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    rows = run(args)
    print(table(rows))
    if args.json_out:
        Path(args.json_out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
