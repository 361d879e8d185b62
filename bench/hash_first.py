"""A cache hit by hash alone next to the same hit with the upload, through the real HTTP server.

Starts its own Redis and gunicorn as the Procfile runs it (2 workers × 4 threads, local
storage), with the front door (``api/front.py``) before it as ``make run`` has it. No gpu
worker: each photo's outputs are put in the result cache directly (the hit path never reads
them), then each photo is uploaded once, which is a hit and proves its possession. Each round
sends, in turn, ``GET /healthz``, then for each photo (0.3, 1 and 2 MB) the hit by hash (JSON,
no bytes) and the hit with the upload (multipart), to gunicorn directly and through the front.
Interleaving keeps a shared machine's noise out of the ratios.

``python -m bench.hash_first [--rounds N]`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import redis
import requests
from PIL import Image

from bench.api_stack import (
    answers,
    bench_env,
    start_front,
    start_gunicorn,
    stop,
    wait_for,
)
from devtools.redis_server import free_port, start
from jobs.record import JobOptions
from jobs.submission import job_content_key
from storage.result_cache import ResultCache, StoredOutput, output_names

SIZES_MB = (0.3, 1.0, 2.0)
EFFECTS = ("color", "enhancedblackwhite", "popart", "dithering")


def photo_of(megabytes: float) -> bytes:
    """A noisy real photo (scikit-image's astronaut), JPEG, at least ``megabytes`` MB."""
    from skimage import data

    target = int(megabytes * 1024 * 1024)
    rng = np.random.default_rng(int(megabytes * 10))
    side = int(1000 * (megabytes**0.5) * 1.3)
    base = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.BICUBIC)
    pixels = np.asarray(base).astype(np.int16) + rng.normal(0, 6, (side, side, 3)).astype(np.int16)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    for quality in range(70, 101):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        if out.tell() >= target:
            break
    return out.getvalue()


def seed_cache(client: redis.Redis, photo: bytes) -> None:
    """The photo's outputs as a worker would have cached them (default options)."""
    options = JobOptions(EFFECTS, 2048, "webp")
    key = job_content_key(hashlib.sha256(photo).hexdigest(), "isnet-general-use", options)
    outputs = {
        name: StoredOutput(f"results/{key}/{name}.webp", "image/webp", 2048, 2048, 1000)
        for name in output_names(EFFECTS)
    }
    ResultCache(client, "cutout").store(key, outputs)


def time_one_server(
    base: str, where: str, photos: dict[str, bytes], rounds: int, timings: dict[str, list[float]]
) -> None:
    http = requests.Session()
    for data in photos.values():  # the upload that proves possession: already a hit
        first = http.post(f"{base}/api/v2/jobs", files={"image": ("p.jpg", data)})
        assert first.status_code == 200, first.text
    calls: list[tuple[str, Callable[[], requests.Response]]] = [
        (f"{where}: healthz", lambda: http.get(f"{base}/healthz"))
    ]
    for name, data in photos.items():
        body = {"image_sha256": hashlib.sha256(data).hexdigest()}
        files = {"image": ("p.jpg", data)}
        calls.append(
            (f"{where}: hash {name}", partial(http.post, f"{base}/api/v2/jobs", json=body))
        )
        calls.append(
            (f"{where}: upload {name}", partial(http.post, f"{base}/api/v2/jobs", files=files))
        )
    for i in range(rounds + 5):  # the first five warm connections and caches up
        for kind, call in calls:
            began = time.perf_counter()
            response = call()
            elapsed = (time.perf_counter() - began) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{kind}: {response.status_code} {response.text[:200]}")
            if i >= 5:
                timings.setdefault(kind, []).append(elapsed)


def measure(rounds: int, workdir: Path) -> tuple[dict[str, list[float]], dict[str, int]]:
    redis_port, api_port, front_port = free_port(), free_port(), free_port()
    redis_proc = start(redis_port, workdir / "redis")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = bench_env(redis_url, workdir)
    # "auto": gunicorn takes both the front door's PROXY line and the direct requests.
    api = start_gunicorn(env, workdir, api_port, proxy_protocol="auto")
    front = start_front(env, workdir, front_port, api_port)
    photos = {f"{mb:g} MB": photo_of(mb) for mb in SIZES_MB}
    sizes = {name: len(data) for name, data in photos.items()}
    try:
        direct, via_front = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{front_port}"
        wait_for(
            lambda: answers(f"{direct}/healthz") and answers(f"{via_front}/healthz"), 60, "API"
        )
        client = redis.Redis.from_url(redis_url)
        for data in photos.values():
            seed_cache(client, data)
        timings: dict[str, list[float]] = {}
        for base, where in ((direct, "gunicorn"), (via_front, "front")):
            time_one_server(base, where, photos, rounds, timings)
        return timings, sizes
    finally:
        stop(front, api)
        stop(redis_proc, grace=10)


def report(timings: dict[str, list[float]], sizes: dict[str, int], rounds: int) -> str:
    rows = [
        "Photo sizes: " + ", ".join(f"{n} = {b / 1e6:.2f} MB" for n, b in sizes.items())
        + f"; {rounds} rounds, one client, keep-alive.",
        "",
        "| request | p50 ms | p90 ms | p50 / healthz |",
        "|---|---:|---:|---:|",
    ]  # fmt: skip
    for where in ("gunicorn", "front"):
        floor = statistics.median(timings[f"{where}: healthz"])
        for kind, values in timings.items():
            if not kind.startswith(where):
                continue
            p50 = statistics.median(values)
            p90 = float(np.percentile(values, 90))
            rows.append(f"| {kind} | {p50:.2f} | {p90:.2f} | {p50 / floor:.1f}× |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hash_first")
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cutout-bench-") as tmp:
        timings, sizes = measure(args.rounds, Path(tmp))
    print(report(timings, sizes, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
