"""A gpu worker's cold start and memory, as a real process (issue 21).

    .venv/bin/python -m bench.gpu_worker [--engine int8] [--batches 2] [--env KEY=VALUE ...]

Starts Redis and the API (gunicorn), submits one small job (a 512 px photo) while no worker
runs, then starts a gpu worker as the Procfile does (``tests/conftest.py``'s helpers) and
measures:

1. cold start: the worker process's start → its first finished batch (the job's
   ``completed_at``), and the phases the worker logs (``cold_start_seconds``, "ready for jobs");
2. resident memory (RSS, psutil) idle after that first batch, then the peak while
   ``--batches`` full batches of distinct 12 MP photos (``CUTOUT_FLUSH_EVERY`` each, all four
   effects, webp at 2048 px) run, and idle again afterwards.

``--env`` sets more of the worker's environment (say ``CUTOUT_MALLOC_ARENAS=0``), to compare
settings. ``--baseline DIR`` alternates, ``--rounds`` times, a worker run from another checkout
of the project (``git archive <commit> | tar -x -C DIR``: the code before a change) with one
run from this one, on the same machine in the same minutes. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import requests

import tests.conftest
from bench.photos import distinct_phone_jpegs
from contract import batching
from devtools.redis_server import free_port, start
from jobs.record import parse_iso
from tests.conftest import (
    _answers,
    _stop,
    photo_jpeg,
    stack_env,
    start_api,
    start_worker,
    wait_until,
)

GiB = 2**30


class RssSampler:
    """The process's resident set, sampled every ``every`` seconds: the peak and the last."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def submit(api_url: str, photo: bytes, **form: str) -> str:
    response = requests.post(
        f"{api_url}/api/v2/jobs", files={"image": ("photo.jpg", photo)}, data=form, timeout=60
    )
    response.raise_for_status()
    return str(response.headers["Location"])


def wait_done(api_url: str, location: str, timeout: float = 900) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = requests.get(f"{api_url}{location}", timeout=30).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    job: dict[str, Any] = wait_until(done, timeout, f"job {location}", interval=0.2)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {location} ended {job['status']}: {job.get('error')}")
    return job


def logged(log: Path, stage: str) -> dict[str, Any] | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("stage") == stage:
                return entry  # type: ignore[no-any-return]
    return None


def timeline(log: Path, created: float, until: float) -> list[tuple[str, str]]:
    """The worker's log lines up to ``until`` (epoch), as seconds after its process started."""
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        at = parse_iso(entry["ts"])
        if at > until:
            break
        rows.append((f"+{at - created:.2f} s", entry.get("message", "")[:90]))
    return rows


def measure(
    engine: str, batches: int, extra_env: dict[str, str], tree: Path | None = None
) -> list[tuple[str, str]]:
    """The figures of one worker run from ``tree`` (default: this checkout)."""
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="cutout-bench-worker-") as tmp:
        base = Path(tmp)
        port = free_port()
        redis_proc = start(port, base / "redis")
        logs = base / "logs"
        logs.mkdir()
        env = stack_env(
            f"redis://127.0.0.1:{port}/0",
            base / "files",
            CUTOUT_ENGINE=engine,
            CUTOUT_DEVICE="cpu",
            CUTOUT_FLUSH_INTERVAL="0.3",
            **extra_env,
        )
        api_port = free_port()
        api = start_api(env, logs, api_port)
        api_url = f"http://127.0.0.1:{api_port}"
        worker = None
        try:
            wait_until(lambda: _answers(f"{api_url}/healthz"), 60, "gunicorn")
            first = submit(api_url, photo_jpeg("astronaut"), effects="color", max_size="512")
            here = tests.conftest.ROOT
            tests.conftest.ROOT = tree or here  # the worker's working directory: its code
            try:
                worker = start_worker(env, logs)
            finally:
                tests.conftest.ROOT = here
            created = psutil.Process(worker.pid).create_time()
            job = wait_done(api_url, first)
            first_batch = parse_iso(job["completed_at"]) - created
            cold = logged(logs / "gpu.log", "cold_start") or {}
            ready = logged(logs / "gpu.log", "ready") or {}
            rows.append(("process start → first finished batch", f"{first_batch:.2f} s"))
            rows.append(("process start → ready (worker log)", ready.get("message", "?")))
            rows.append(("the first job's timings (ms)", str(job.get("timings"))))
            rows.append(("cold start phases (worker log)", str(cold.get("cold_start_seconds"))))
            done = parse_iso(job["completed_at"])
            rows.extend(timeline(logs / "gpu.log", created, done))
            sampler = RssSampler(worker.pid)
            time.sleep(5)
            rows.append(("RSS idle after the first batch", f"{sampler.rss() / GiB:.2f} GiB"))
            if not batches:
                return rows
            jobs = batches * batching.flush_every(env)
            photos = distinct_phone_jpegs(jobs)
            began = time.perf_counter()
            with sampler, ThreadPoolExecutor(4) as pool:
                locations = list(
                    pool.map(lambda p: submit(api_url, p, max_size="2048", format="webp"), photos)
                )
                for location in locations:
                    wait_done(api_url, location)
            seconds = time.perf_counter() - began
            rows.append((f"{jobs} jobs of 12 MP ({batches} batches)", f"{seconds:.1f} s"))
            rows.append(("RSS peak while they ran", f"{sampler.peak / GiB:.2f} GiB"))
            time.sleep(10)
            rows.append(("RSS idle 10 s after them", f"{sampler.rss() / GiB:.2f} GiB"))
        finally:
            _stop(api)
            if worker is not None:
                _stop(worker)
            redis_proc.terminate()
            redis_proc.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="int8")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    settings = " ".join(args.env) or "defaults"
    runs: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.baseline is not None:
        runs.insert(0, (f"baseline {args.baseline}", args.baseline.resolve()))
    print(f"{date.today()}, engine {args.engine}, {settings}")
    for round_ in range(args.rounds):
        for label, tree in runs:
            rows = measure(args.engine, args.batches, extra, tree)
            print(f"\n{label}, round {round_ + 1}\n\n| figure | value |\n|---|---|")
            for name, value in rows:
                print(f"| {name} | {value} |", flush=True)


if __name__ == "__main__":
    main()
