"""1,000 open event streams on queued jobs while another client submits and polls.

Starts its own Redis, gunicorn as the Procfile runs it (2 workers × 4 threads, PROXY protocol)
and the front door (``api/front.py``) before it, as ``make run`` does; no gpu worker, so jobs
stay queued and their streams stay open. Steps:

1. baseline: a client submits a new photo (a miss, 202, queued) and polls its job twice, as
   ``bench/cache_hit.py`` does, ``--rounds`` times: submit latency p50/p99;
2. ``--streams`` streams are opened (asyncio sockets in this process) on as many queued jobs;
3. the same submit-and-poll rounds with every stream open;
4. with the streams still open, ``--changes`` state changes (queued → processing through
   ``JobStore.update``, as a worker makes them) from another thread: the delay from just before
   the update to the ``processing`` event's arrival at its subscriber, p50/p99;
5. the resident memory of the front and of gunicorn (master and workers), before and with.

``python -m bench.streams [--streams N] [--rounds N] [--changes N]`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
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
from jobs.record import JobOptions, JobRecord, now_iso
from jobs.store import JobStore


def small_photo() -> bytes:
    """A 0.3 MB noisy JPEG; each submit appends its own bytes, so every one is a miss."""
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (420, 420, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def submit_and_poll(base: str, rounds: int) -> list[float]:
    """Submit latencies (ms) of ``rounds`` misses, each followed by two polls of its job."""
    http = requests.Session()
    photo = small_photo()
    latencies = []
    warm = 20  # connections, the app's lazy set-up, the branch predictors of both servers
    for i in range(rounds + warm):
        began = time.perf_counter()
        answer = http.post(
            f"{base}/api/v2/jobs", files={"image": ("p.jpg", photo + uuid.uuid4().bytes)}
        )
        elapsed = (time.perf_counter() - began) * 1000
        if answer.status_code != 202:
            raise RuntimeError(f"submit: {answer.status_code} {answer.text[:200]}")
        for _ in range(2):
            assert http.get(f"{base}{answer.headers['Location']}").status_code == 200
        if i >= warm:
            latencies.append(elapsed)
    return latencies


def queued_jobs(jobs: JobStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        record = JobRecord(
            id=uuid.uuid4().hex,
            status="queued",
            created_at=now_iso(),
            options=JobOptions(("color",), 512, "webp"),
            content_key=uuid.uuid4().hex,
        )
        jobs.create(record)
        ids.append(record.id)
    return ids


class Streams:
    """Open event streams in an asyncio loop on a thread of its own; records when each job's
    ``processing`` event arrives."""

    def __init__(self, port: int, job_ids: list[str]) -> None:
        self.port = port
        self.job_ids = job_ids
        self.opened = 0
        self.arrived: dict[str, float] = {}
        self.errors: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._all())

    async def _all(self) -> None:
        self.stop = asyncio.Event()
        tasks = [asyncio.create_task(self._one(job_id)) for job_id in self.job_ids]
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, job_id: str) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            request = f"GET /api/v2/jobs/{job_id}/events HTTP/1.1\r\nHost: bench\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                self.errors.append(status.decode(errors="replace"))
                return
            counted = False
            while line := await reader.readline():
                if line.startswith(b"event: queued") and not counted:
                    counted = True
                    self.opened += 1
                    if self.opened == len(self.job_ids):
                        self.ready.set()
                elif line.startswith(b"event: processing"):
                    self.arrived[job_id] = time.time()
            writer.close()
        except OSError as exc:
            self.errors.append(repr(exc))

    def start(self, timeout: float) -> None:
        self.thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError(
                f"{self.opened} of {len(self.job_ids)} streams open: {self.errors[:3]}"
            )

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        process = psutil.Process(pid)
        total += process.memory_info().rss
        total += sum(child.memory_info().rss for child in process.children(recursive=True))
    return total / 1e6


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # children inherit it
    redis_port, api_port, front_port = free_port(), free_port(), free_port()
    redis_proc = start(redis_port, workdir / "redis")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = bench_env(redis_url, workdir, CUTOUT_MAX_QUEUE_DEPTH="1000000")
    api = start_gunicorn(env, workdir, api_port, proxy_protocol="v1")
    front = start_front(env, workdir, front_port, api_port)
    base = f"http://127.0.0.1:{front_port}"
    streams: Streams | None = None
    try:
        wait_for(lambda: answers(f"{base}/healthz"), 60, "the front and gunicorn")
        results: dict[str, object] = {}
        results["submit without streams"] = submit_and_poll(base, args.rounds)
        results["memory without streams"] = (rss_mb([front.pid]), rss_mb([api.pid]))

        jobs = JobStore(redis.Redis.from_url(redis_url))
        ids = queued_jobs(jobs, args.streams)
        opening = time.perf_counter()
        streams = Streams(front_port, ids)
        streams.start(timeout=300)
        results["open seconds"] = time.perf_counter() - opening
        time.sleep(2)  # let every connection settle before timing
        results["submit with streams"] = submit_and_poll(base, args.rounds)
        results["memory with streams"] = (rss_mb([front.pid]), rss_mb([api.pid]))

        changed: dict[str, float] = {}
        for job_id in ids[: args.changes]:
            changed[job_id] = time.time()
            jobs.update(job_id, lambda r: replace(r, status="processing", started_at=now_iso()))
            time.sleep(0.02)
        wait_for(lambda: all(j in streams.arrived for j in changed), 60, "every processing event")  # type: ignore[union-attr]
        results["delay ms"] = [(streams.arrived[j] - t) * 1000 for j, t in changed.items()]
        results["streams"] = streams.opened
        return results
    except Exception:
        print((workdir / "front.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        if streams is not None:
            streams.close()
        stop(front, api)
        stop(redis_proc, grace=10)


def _p(values: object, q: float) -> float:
    return float(np.percentile(values, q))  # type: ignore[call-overload]


def report(results: dict[str, object], args: argparse.Namespace) -> str:
    without, with_ = results["submit without streams"], results["submit with streams"]
    mem0, mem1 = results["memory without streams"], results["memory with streams"]
    delay = results["delay ms"]
    ratio = statistics.median(with_) / statistics.median(without)  # type: ignore[arg-type]
    return "\n".join(
        [
            f"{results['streams']} streams open (opened in {results['open seconds']:.1f} s), "
            f"{args.rounds} submit rounds each way, {args.changes} changes.",
            "",
            "| measure | without streams | with streams |",
            "|---|---:|---:|",
            f"| submit p50 ms (0.3 MB miss, via the front) | {_p(without, 50):.1f} | "
            f"{_p(with_, 50):.1f} ({ratio:.2f}×) |",
            f"| submit p99 ms | {_p(without, 99):.1f} | {_p(with_, 99):.1f} |",
            f"| front RSS MB | {mem0[0]:.0f} | {mem1[0]:.0f} |",  # type: ignore[index]
            f"| gunicorn RSS MB (master + 2 workers) | {mem0[1]:.0f} | {mem1[1]:.0f} |",  # type: ignore[index]
            f"| change → subscriber delay p50 / p99 ms | | {_p(delay, 50):.1f} / "
            f"{_p(delay, 99):.1f} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cutout-bench-") as tmp:
        results = measure(args, Path(tmp))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
