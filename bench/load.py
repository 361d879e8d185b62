"""The project's own load, soak and cold-start-storm driver, against a real stack on 127.0.0.1.

    .venv/bin/python -m bench.load run [--rate 100] [--duration 60] [--mix ...] [--json F]
    .venv/bin/python -m bench.load storm [--workers 1,4] [--timeout 300]

``run`` starts the stack the way ``make run`` does (``devtools/supervise.py``: gunicorn, a gpu
worker, the io worker, beat, Flower) on free ports with a Redis and a storage directory of its
own, submits a few photos and waits for them (the warm set), then sends an open-loop stream of
requests at ``--rate`` per second for ``--duration`` seconds: submits of new photos (the model
runs), submits of the warm set (answered by the result cache), polls of known jobs and
downloads of their outputs, mixed by ``--mix``. It reports throughput, p50/p99 latency per
kind, every answer by status and code, and the RSS of every process of the stack sampled
every ``--sample-every`` seconds with its slope (MB per minute, least squares after the first
``--warmup`` fraction): a process whose memory climbs steadily through a soak leaks.

Latency is measured from the moment a request was due, not from when a thread got to send it,
so a saturated client or server shows as latency rather than as a quietly lower rate. The rate
limiter is raised out of the way (the test is of the service, not of one client's quota); the
queue is bounded (``--max-queue-depth``), so new photos past what the worker keeps up with
are refused with ``503 queue_full`` (counted as refusals, not errors).

``storm`` starts ``--workers`` gpu worker processes at once (the Procfile's ``gpu`` line, each
its own instance) against a fresh Redis and reports each one's time from start to ready (its
first heartbeat, sent after the model is loaded and warmed) and the time until all are ready.

A plain script rather than locust: what is measured here is an open-loop rate with latency
from the due time, plus the memory of the server's processes in the same run; a thread pool
and requests do that in one process with no new dependency (locust brings gevent and its own
runner, and measures from the send). Everything is bound to 127.0.0.1 and bounded in time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis
import requests
from PIL import Image

from devtools.redis_server import free_port, start
from devtools.supervise import ROOT, programs, read_procfile, running

DEFAULT_MIX = {"submit_new": 0.01, "submit_cached": 0.19, "poll": 0.5, "download": 0.3}
KINDS = tuple(DEFAULT_MIX)
REFUSALS = {429, 503}  # answers the service means under load (rate_limited, queue_full)


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A small JPEG no other seed makes (so a submit of it is a cache miss)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, share = part.partition("=")
        if kind not in KINDS:
            raise ValueError(f"--mix: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        mix[kind] = float(share)
    if sum(mix.values()) <= 0:
        raise ValueError("--mix: the shares must add up to more than 0")
    return mix


@dataclass
class Answer:
    kind: str
    due: float
    latency: float
    status: int  # 0: no HTTP answer (connection refused, timeout)
    code: str


@dataclass
class Targets:
    """What polls and downloads ask for: the warm set's jobs and their output URLs."""

    photos: list[bytes]
    job_urls: list[str]
    output_urls: list[str]


class Client:
    def __init__(self, api: str, targets: Targets, timeout: float = 10.0, seed: int = 0) -> None:
        if not api.startswith(("http://127.0.0.1:", "http://localhost:")):
            raise ValueError("the load driver only ever targets 127.0.0.1")
        self.api = api.rstrip("/")
        self.targets = targets
        self.timeout = timeout
        self.rng = random.Random(seed)
        self._local = threading.local()
        self._seed = 1_000_000 + seed * 1_000_000
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session  # type: ignore[no-any-return]

    def _new_photo(self) -> bytes:
        with self._lock:
            self._seed += 1
            seed = self._seed
        return photo(seed)

    def send(self, kind: str) -> requests.Response:
        t = self.targets
        if kind == "submit_new":
            files = {"image": ("p.jpg", self._new_photo(), "image/jpeg")}
            return self.session.post(f"{self.api}/api/v2/jobs", files=files, timeout=self.timeout)
        if kind == "submit_cached":
            image = self.rng.choice(t.photos)
            files = {"image": ("p.jpg", image, "image/jpeg")}
            return self.session.post(f"{self.api}/api/v2/jobs", files=files, timeout=self.timeout)
        url = self.rng.choice(t.job_urls if kind == "poll" else t.output_urls)
        return self.session.get(url, timeout=self.timeout)

    def answer(self, kind: str, due: float) -> Answer:
        try:
            response = self.send(kind)
            status, code = response.status_code, _code(response)
        except requests.RequestException as exc:
            status, code = 0, type(exc).__name__
        return Answer(kind, due, time.monotonic() - due, status, code)


def _code(response: requests.Response) -> str:
    if response.ok:
        return "ok"
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def warm_up(api: str, count: int = 4, timeout: float = 300) -> Targets:
    """Submit ``count`` photos and wait until they succeed: the cached set, and the jobs and
    outputs that polls and downloads read."""
    photos = [photo(seed) for seed in range(count)]
    job_urls = []
    for image in photos:
        files = {"image": ("p.jpg", image, "image/jpeg")}
        answer = requests.post(f"{api}/api/v2/jobs", files=files, timeout=30)
        answer.raise_for_status()
        job_urls.append(f"{api}/api/v2/jobs/{answer.json()['id']}")
    outputs: list[str] = []
    deadline = time.monotonic() + timeout
    for url in job_urls:
        while True:
            job = requests.get(url, timeout=30).json()
            if job["status"] == "succeeded":
                outputs.extend(out["url"] for out in job["outputs"].values())
                break
            if job["status"] in ("failed", "canceled") or time.monotonic() > deadline:
                raise RuntimeError(f"warm-up job {url} did not succeed: {job}")
            time.sleep(0.5)
    return Targets(photos, job_urls, outputs)


class MemorySampler:
    """RSS of every process of the stack (each program's process and its children), sampled
    from a thread every ``every`` seconds."""

    def __init__(self, roots: Mapping[str, int], every: float) -> None:
        self.roots = dict(roots)
        self.every = every
        self.samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.roots.items():
            try:
                top = psutil.Process(pid)
                family = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for index, proc in enumerate(family):
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                label = name if index == 0 else f"{name} child {proc.pid}"
                self.samples[label].append((now, rss))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


def drive(
    client: Client, rate: float, duration: float, mix: Mapping[str, float], threads: int = 64
) -> list[Answer]:
    """Send ``rate`` requests a second for ``duration`` seconds, each due at its own instant
    (open loop), of kinds drawn by ``mix``; returns every answer (waits at most the client's
    timeout for the last ones)."""
    kinds, weights = list(mix), list(mix.values())
    count = int(rate * duration)
    answers: list[Answer] = []
    lock = threading.Lock()

    def one(kind: str, due: float) -> None:
        got = client.answer(kind, due)
        with lock:
            answers.append(got)

    start_at = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for i in range(count):
            due = start_at + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pool.submit(one, client.rng.choices(kinds, weights)[0], due)
    return answers


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Report:
    rate: float
    duration: float
    answers: list[Answer]
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    warmup: float = 0.1
    wall: float = 0.0

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, Any] = {}
        for kind in KINDS:
            mine = [a for a in self.answers if a.kind == kind]
            if not mine:
                continue
            ok = [a.latency for a in mine if 200 <= a.status < 400]
            by_kind[kind] = {
                "sent": len(mine),
                "ok": len(ok),
                "p50_ms": round(percentile(ok, 0.5) * 1000, 1),
                "p99_ms": round(percentile(ok, 0.99) * 1000, 1),
            }
        codes = Counter(f"{a.status} {a.code}" for a in self.answers)
        errors = sum(
            n for key, n in codes.items() if not key.startswith(("2", "3")) and not _refusal(key)
        )
        memory = {}
        for label, points in sorted(self.memory.items()):
            if not points:
                continue
            first = points[0][0]
            cut = first + self.warmup * (points[-1][0] - first)
            memory[label] = {
                "rss_start_mb": round(points[0][1], 1),
                "rss_end_mb": round(points[-1][1], 1),
                "slope_mb_per_min": round(slope_per_minute([p for p in points if p[0] >= cut]), 3),
                # Flat here but not above: growth that levels off (warm-up, allocator), not a leak.
                "slope_last_half_mb_per_min": round(
                    slope_per_minute(points[len(points) // 2 :]), 3
                ),
                "samples": len(points),
                "series": [(round(t - first, 1), round(v, 1)) for t, v in points],
            }
        ok_all = [a.latency for a in self.answers if 200 <= a.status < 400]
        return {
            "target_rate": self.rate,
            "duration_s": self.duration,
            "sent": len(self.answers),
            "throughput_per_s": round(len(self.answers) / max(self.wall, 1e-9), 1),
            "ok": len(ok_all),
            "p50_ms": round(percentile(ok_all, 0.5) * 1000, 1),
            "p99_ms": round(percentile(ok_all, 0.99) * 1000, 1),
            "errors": errors,
            "answers": dict(codes.most_common()),
            "by_kind": by_kind,
            "memory": memory,
        }


def _refusal(key: str) -> bool:
    return int(key.split()[0]) in REFUSALS


def markdown(summary: Mapping[str, Any]) -> str:
    lines = [
        f"target {summary['target_rate']} req/s for {summary['duration_s']} s: sent "
        f"{summary['sent']}, {summary['throughput_per_s']} req/s answered, "
        f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, errors {summary['errors']}",
        "",
        "| kind | sent | ok | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for kind, row in summary["by_kind"].items():
        lines.append(
            f"| {kind} | {row['sent']} | {row['ok']} | {row['p50_ms']} | {row['p99_ms']} |"
        )
    lines += ["", "| answer | count |", "|---|---|"]
    lines += [f"| {key} | {n} |" for key, n in summary["answers"].items()]
    lines += [
        "",
        "| process | RSS start MB | RSS end MB | slope MB/min | last half MB/min |",
        "|---|---|---|---|---|",
    ]
    for label, row in summary["memory"].items():
        lines.append(
            f"| {label} | {row['rss_start_mb']} | {row['rss_end_mb']} | "
            f"{row['slope_mb_per_min']} | {row['slope_last_half_mb_per_min']} |"
        )
    return "\n".join(lines)


def stack_environment(base: Path, redis_url: str, max_queue_depth: int) -> dict[str, str]:
    """``make run``'s environment on free ports, with a storage and run directory in ``base``."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "CUTOUT_ENV": "development",
        "CUTOUT_AUTH": "off",
        "CUTOUT_REDIS_URL": redis_url,
        "CUTOUT_LOCAL_DIR": str(base / "files"),
        "CUTOUT_RUN_DIR": str(base / "run"),
        "CUTOUT_API_PORT": str(free_port()),
        "CUTOUT_UPSTREAM_PORT": str(free_port()),
        "CUTOUT_FLOWER_PORT": str(free_port()),
        "CUTOUT_GPU_METRICS_PORT": str(free_port()),
        "CUTOUT_IO_METRICS_PORT": str(free_port()),
        "CUTOUT_RATE_LIMIT_SUBMIT": "1000000 per minute",
        "CUTOUT_RATE_LIMIT_READ": "1000000 per minute",
        "CUTOUT_MAX_QUEUE_DEPTH": str(max_queue_depth),
        "PYTHONUNBUFFERED": "1",
    }


def _ready(api: str) -> bool:
    try:
        return requests.get(f"{api}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


@dataclass
class RunningStack:
    api: str
    roots: dict[str, int]  # program -> pid (and "redis")


@contextmanager
def own_stack(
    base: Path, max_queue_depth: int, ready_timeout: float = 300
) -> Iterator[RunningStack]:
    """Redis on a free port, then the Procfile under supervisord; stopped as Ctrl-C would."""
    redis_port = free_port()
    redis_proc = start(redis_port, base / "redis")
    env = stack_environment(base, f"redis://127.0.0.1:{redis_port}/0", max_queue_depth)
    api = f"http://127.0.0.1:{env['CUTOUT_API_PORT']}"
    with (base / "stack.log").open("wb") as log:
        sup = subprocess.Popen(
            [sys.executable, "-m", "devtools.supervise", "-c", "gpu=1"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait(lambda: _ready(api), ready_timeout, "the stack to be ready")
        roots = running(base / "run")
        yield RunningStack(api, {**roots, "redis": redis_proc.pid})
    finally:
        sup.send_signal(signal.SIGINT)
        try:
            sup.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
        redis_proc.terminate()
        redis_proc.wait(10)


def run(args: argparse.Namespace) -> dict[str, Any]:
    mix = parse_mix(args.mix) if args.mix else DEFAULT_MIX
    with tempfile.TemporaryDirectory(prefix="cutout-load-") as tmp:
        with own_stack(Path(tmp), args.max_queue_depth) as stack:
            targets = warm_up(stack.api)
            sampler = MemorySampler(stack.roots, args.sample_every).start()
            began = time.monotonic()
            answers = drive(
                Client(stack.api, targets, seed=args.seed), args.rate, args.duration, mix
            )
            wall = time.monotonic() - began
            sampler.sample()
            sampler.stop()
            load = os.getloadavg()
    report = Report(args.rate, args.duration, answers, dict(sampler.samples), args.warmup, wall)
    summary = report.summary()
    summary["mix"] = mix
    summary["machine_load_avg_1_5_15"] = [round(x, 2) for x in load]
    return summary


def storm(workers: int, timeout: float) -> dict[str, Any]:
    """Start ``workers`` gpu workers at once; each one's seconds to its first heartbeat."""
    from jobs.heartbeats import Heartbeats

    gpu = [
        p for p in programs(read_procfile(ROOT / "Procfile"), {"gpu": workers}) if p.kind == "gpu"
    ]
    with tempfile.TemporaryDirectory(prefix="cutout-storm-") as tmp:
        base = Path(tmp)
        redis_port = free_port()
        redis_proc = start(redis_port, base / "redis")
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = stack_environment(base, redis_url, 1000)
        beats = Heartbeats(redis.Redis.from_url(redis_url), stale_after=3600)
        procs: list[subprocess.Popen[bytes]] = []
        ready: dict[str, float] = {}
        peak_rss = 0.0
        began = time.monotonic()
        try:
            for prog in gpu:
                with (base / f"{prog.name}.log").open("wb") as log:
                    procs.append(
                        subprocess.Popen(
                            ["/bin/sh", "-c", prog.command],
                            cwd=ROOT,
                            env={**env, "PORT": str(prog.port)},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )  # fmt: skip
                    )
            while len(ready) < workers and time.monotonic() - began < timeout:
                for name in beats.alive("gpu"):
                    ready.setdefault(name.split("@")[0], round(time.monotonic() - began, 1))
                rss = 0.0
                for proc in procs:
                    try:
                        rss += psutil.Process(proc.pid).memory_info().rss / 2**20
                    except psutil.NoSuchProcess:
                        pass
                peak_rss = max(peak_rss, rss)
                if any(proc.poll() is not None for proc in procs):
                    break
                time.sleep(0.2)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
            redis_proc.terminate()
            redis_proc.wait(10)
    return {
        "workers": workers,
        "ready_s": dict(sorted(ready.items())),
        "all_ready_s": max(ready.values()) if len(ready) == workers else None,
        "peak_rss_mb_all_workers": round(peak_rss),
        "machine_load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("run", help="load or soak the whole stack")
    load.add_argument("--rate", type=float, default=100.0, help="requests per second")
    load.add_argument("--duration", type=float, default=60.0, help="seconds (a soak: >= 600)")
    load.add_argument("--mix", default="", help="e.g. submit_new=0.01,submit_cached=0.19,...")
    load.add_argument("--max-queue-depth", type=int, default=50)
    load.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    load.add_argument(
        "--warmup", type=float, default=0.1, help="share of samples left out of slopes"
    )
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--json", type=Path, help="also write the summary here")
    cold = sub.add_parser("storm", help="start N gpu workers at once: time to all-ready")
    cold.add_argument(
        "--workers",
        default="4",
        help="N, or N,M,... for storms one after another (1 first: the baseline)",
    )
    cold.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.command == "run":
        if not 0 < args.rate <= 1000 or not 0 < args.duration <= 3600:
            parser.error("--rate must be in (0, 1000] and --duration in (0, 3600] seconds")
        summary = run(args)
        print(markdown(summary))
        print(
            f"\nmachine load average (1/5/15 min) at the end: {summary['machine_load_avg_1_5_15']}"
        )
    else:
        sizes = [int(n) for n in args.workers.split(",") if n.strip().isdigit()]
        if not sizes or not all(1 <= n <= 16 for n in sizes):
            parser.error("--workers: numbers between 1 and 16, comma-separated")
        summary = {"storms": [storm(n, args.timeout) for n in sizes]}
        print(json.dumps(summary, indent=2))
    if getattr(args, "json", None):
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
