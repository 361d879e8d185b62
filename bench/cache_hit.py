"""Cache-hit latency of ``POST /api/v2/jobs`` through the real HTTP server, with a 2 MB photo.

Starts its own Redis, gunicorn as the Procfile runs it (2 workers × 4 threads, local storage)
and a gpu worker. One submission computes the photo's outputs; the worker is then stopped so
that nothing but the API runs while timing. Each round sends, in turn:

- ``GET /healthz``: the floor (HTTP, gunicorn, Flask; no body);
- a hit: the same photo and options again (upload, sniff, header probe, sha256, one Redis
  lookup, the job record written, URLs rendered);
- a miss: the photo with a different trailing byte string, so a new content key (the same
  work as a hit, plus staging the upload, the claim and the enqueue).

Interleaving the three keeps a shared machine's noise out of the ratios.
``python -m bench.cache_hit [--rounds N]`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import redis
import requests
from PIL import Image

from bench.api_stack import answers, bench_env, spawn, start_gunicorn, wait_for
from devtools.redis_server import free_port, start
from jobs.heartbeats import Heartbeats

ROOT = Path(__file__).resolve().parent.parent
TARGET_BYTES = 2 * 1024 * 1024


def two_megabyte_photo() -> bytes:
    """A real photo (scikit-image's astronaut) upscaled, with sensor-like noise, to ~2 MB."""
    from skimage import data

    rng = np.random.default_rng(0)
    base = Image.fromarray(data.astronaut()).resize((2400, 2400), Image.Resampling.BICUBIC)
    pixels = np.asarray(base).astype(np.int16) + rng.normal(0, 5, (2400, 2400, 3)).astype(np.int16)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    best = b""
    for quality in range(80, 100):  # the first quality at or above 2 MB
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        best = out.getvalue()
        if len(best) >= TARGET_BYTES:
            break
    return best


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(rounds: int, workdir: Path) -> tuple[dict[str, list[float]], int]:
    redis_port, api_port = free_port(), free_port()
    redis_proc = start(redis_port, workdir / "redis")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    # The hit path as anonymous local use runs it; the worker needs no metrics port.
    env = bench_env(redis_url, workdir, CUTOUT_METRICS_PORT="0")
    api = start_gunicorn(env, workdir, api_port)
    worker = spawn(
        [sys.executable, "-m", "celery", "-A", "tasks.worker", "worker", "--queues", "gpu",
         "--pool", "threads", "--concurrency", "1", "--hostname", "gpu@bench",
         "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        env, workdir / "gpu.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    photo = two_megabyte_photo()
    try:
        wait_for(lambda: answers(f"{url}/healthz"), 60, "gunicorn")
        beats = Heartbeats(redis.Redis.from_url(redis_url))
        wait_for(lambda: bool(beats.alive("gpu")), 300, "the gpu worker")
        http = requests.Session()
        first = http.post(f"{url}/api/v2/jobs", files={"image": ("p.jpg", photo)}, timeout=60)
        location = url + first.headers["Location"]
        wait_for(
            lambda: http.get(location, timeout=10).json()["status"] == "succeeded",
            600,
            "the first (computing) job",
        )
        worker.terminate()
        worker.wait(60)

        def post(data: bytes) -> requests.Response:
            return http.post(f"{url}/api/v2/jobs", files={"image": ("p.jpg", data)}, timeout=60)

        timings: dict[str, list[float]] = {"healthz": [], "hit": [], "miss": []}
        for i in range(rounds + 5):  # the first five warm connections and caches up
            for kind, call, status in (
                ("healthz", lambda: http.get(f"{url}/healthz", timeout=10), 200),
                ("hit", lambda: post(photo), 200),
                ("miss", lambda i=i: post(photo + b"%08d" % i), 202),
            ):
                start_s = time.perf_counter()
                response = call()
                elapsed = (time.perf_counter() - start_s) * 1000
                if response.status_code != status:
                    raise RuntimeError(f"{kind}: {response.status_code} {response.text[:200]}")
                if i >= 5:
                    timings[kind].append(elapsed)
        return timings, len(photo)
    finally:
        for proc in (api, worker):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        redis_proc.terminate()
        redis_proc.wait(10)


def report(timings: dict[str, list[float]], photo_bytes: int, rounds: int, machine: str) -> str:
    floor = statistics.median(timings["healthz"])
    hit = statistics.median(timings["hit"])
    rows = [
        f"Machine: {machine} ({platform.machine()}, {os.cpu_count()} cores), {date.today()}; "
        f"photo {photo_bytes / 1e6:.2f} MB JPEG 2400×2400; {rounds} rounds, gunicorn 2×4 "
        "threads, local storage, one client.",
        "",
        "| request | p50 ms | p90 ms | p50 / healthz | p50 / hit |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, label in (
        ("healthz", "`GET /healthz` (floor)"),
        ("hit", "`POST /api/v2/jobs`, cache hit (200)"),
        ("miss", "`POST /api/v2/jobs`, miss (202, queued)"),
    ):
        values = timings[kind]
        p50 = statistics.median(values)
        rows.append(
            f"| {label} | {p50:.2f} | {percentile(values, 90):.2f} | "
            f"{p50 / floor:.1f}× | {p50 / hit:.2f}× |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_hit")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--machine", default="cpu-2c", help="the name bench/RESULTS.md uses")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cutout-bench-") as tmp:
        timings, size = measure(args.rounds, Path(tmp))
    print(report(timings, size, args.rounds, args.machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
