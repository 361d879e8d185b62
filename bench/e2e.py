"""The worker pipeline end to end: the real service under concurrent clients, against the model.

    .venv/bin/python -m bench.e2e [--jobs 16] [--clients 4] [--repeats 3] [--sweep]
                                  [--format webp|png|jpg+mask] [--gpu-workers N]

Starts Redis, the API under gunicorn and a gpu worker as the Procfile runs them (the test
suite's process helpers, ``tests/conftest.py``), then measures, in one run on one machine:

1. the bare model call on a 12 MP photo (batch 1, the worker's engine, in this process while
   the worker idles) and the model-only throughput (the better of batch 1 and a full batch);
2. one warm job on that photo in this process (the worker's pipeline: decode, model, four
   effects, webp at 2048 px) and one through the service (``process-with-effects``: submit →
   succeeded as the client sees it, the worker otherwise idle);
3. ``--jobs`` distinct 12 MP JPEGs (~2 MB, every third stored turned with EXIF rotation)
   uploaded by ``--clients`` concurrent clients as fast as they can, then polled: jobs/s,
   submit → succeeded percentiles, per-stage times from the job records, the ratio of
   end-to-end throughput to the model-only throughput of step 1, and, where NVML finds a GPU,
   its utilisation sampled every 0.1 s while the stream ran.

``--gpu-workers N`` runs N gpu worker processes (each with its own engine) on the one device,
as ``CUTOUT_GPU_WORKERS`` does in the Procfile and compose; ``--format`` is the jobs' format.

Every photo is a different upload, so the result cache never answers one (a repeat would time a
cache hit). ``--sweep`` repeats step 3 per batching setting, restarting only the worker.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import redis
import requests
import torch

import celeryconfig
from bench.photos import distinct_phone_jpegs
from contract.effects import EFFECT_NAMES
from devtools.redis_server import free_port, start
from jobs.record import parse_iso
from tests.conftest import Stack, _stop, run_stack, start_worker, wait_until
from workers.imageio import decode
from workers.pipeline import JobInput, Pipeline
from workers.predictor import Segmenter, load_segmenter
from workers.settings import WorkerSettings

MAX_SIZE = 2048
FORMAT = "webp"  # the jobs' output format (--format)
STAGES = ("queue_ms", "decode_ms", "inference_ms", "effects_ms", "encode_ms", "store_ms")
# (name, worker environment, worker arguments): step 3 once per row with --sweep.
SWEEP: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
    ("defaults", {}, ()),
    ("1 batch in flight (no overlap)", {"CUTOUT_BATCHES_IN_FLIGHT": "1"}, ()),
    ("flush_every 1 (no batching)", {"CUTOUT_FLUSH_EVERY": "1"}, ()),
    ("flush_every 4", {"CUTOUT_FLUSH_EVERY": "4"}, ()),
    ("flush_every 16", {"CUTOUT_FLUSH_EVERY": "16"}, ()),
    ("flush_interval 0.01 s", {"CUTOUT_FLUSH_INTERVAL": "0.01"}, ()),
    ("flush_interval 0.2 s", {"CUTOUT_FLUSH_INTERVAL": "0.2"}, ()),
    ("prefetch multiplier 1", {}, ("--prefetch-multiplier", "1")),
]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def worker_engine(stack: Stack, log: str = "gpu") -> str:
    """The engine the worker runs, from its ``engine <name> warm`` log line."""

    def warm() -> str | None:
        for line in (stack.logs / f"{log}.log").read_text(errors="replace").splitlines():
            message = json.loads(line).get("message", "") if line.startswith("{") else ""
            if message.startswith("engine ") and " warm" in message:
                return str(message.split()[1])
        return None

    return wait_until(warm, 120, "the worker's engine")  # type: ignore[no-any-return]


# --- step 1 and 2: the model alone, and one job in this process -------------------------------


def model_figures(segmenter: Segmenter, photo: bytes, batch: int, repeats: int) -> dict[str, float]:
    image = torch.from_numpy(decode(photo, MAX_SIZE, segmenter.config.input_size).rgb)
    one = segmenter.preprocess([image.permute(2, 0, 1)])
    many = one.expand(batch, -1, -1, -1).contiguous()
    engine = segmenter.engine
    single = median_seconds(lambda: engine.predict(one), repeats)
    batched = median_seconds(lambda: engine.predict(many), max(1, repeats - 1))
    return {"model_s": single, "img_s_b1": 1 / single, f"img_s_b{batch}": batch / batched}


def job_in_process(segmenter: Segmenter, photo: bytes, repeats: int) -> tuple[float, dict]:
    settings = WorkerSettings.from_env()
    with ThreadPoolExecutor(settings.encode_threads or None) as pool:
        pipeline = Pipeline(segmenter, pool)
        job = JobInput("bench", photo, EFFECT_NAMES, MAX_SIZE, FORMAT)
        pipeline.run([job])  # warm: first-call costs of the effects and encoders
        seconds = median_seconds(lambda: pipeline.run([job]), repeats)
        return seconds, pipeline.run([job])[0].timings


# --- step 2 and 3: through the service --------------------------------------------------------


def submit(session: requests.Session, stack: Stack, photo: bytes) -> str:
    response = session.post(
        f"{stack.api_url}/api/v2/jobs",
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"max_size": str(MAX_SIZE), "format": FORMAT},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.headers["Location"])


def wait_done(session: requests.Session, stack: Stack, location: str, every: float) -> dict:
    while True:
        job = session.get(f"{stack.api_url}{location}", timeout=30).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job  # type: ignore[no-any-return]
        time.sleep(every)


def single_through_service(stack: Stack, photos: list[bytes]) -> list[tuple[float, dict]]:
    """One job at a time (the worker otherwise idle), through ``process-with-effects``, which
    answers as the job ends (no polling load on the same CPUs): the client's submit →
    succeeded seconds, and the job's record."""
    done = []
    with requests.Session() as session:
        for photo in photos:
            began = time.perf_counter()
            response = session.post(
                f"{stack.api_url}/api/v2/process-with-effects",
                files={"image": ("photo.jpg", photo, "image/jpeg")},
                data={"max_size": str(MAX_SIZE), "format": FORMAT, "timeout": "120"},
                timeout=180,
            )
            seconds = time.perf_counter() - began
            job = response.json()
            assert response.status_code == 200 and job["status"] == "succeeded", job
            done.append((seconds, job))
    return done


class GpuSampler:
    """The first GPU's utilisation (NVML), read every ``every`` seconds in a thread while in
    a ``with`` block; no readings where there is no GPU."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every
        self.readings: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from observability.gpu_stats import read_gpus

        while not self._stop.wait(self.every):
            gpus = read_gpus()
            if not gpus:
                return
            self.readings.append(gpus[0].utilization_ratio)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load(stack: Stack, photos: list[bytes], clients: int) -> list[dict[str, Any]]:
    """Every photo uploaded by ``clients`` threads at once, then each job polled to its end;
    each job gets the GPU utilisation readings of the whole stream (``gpu_utilisation``)."""
    shares = [photos[i::clients] for i in range(clients)]
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def client(share: list[bytes]) -> None:
        with requests.Session() as session:
            sent = [(time.time(), submit(session, stack, photo)) for photo in share]
            for submitted, location in sent:
                job = wait_done(session, stack, location, 0.25)
                with lock:
                    results.append({**job, "client_submitted": submitted})

    with GpuSampler() as gpu, ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    failed = [job for job in results if job["status"] != "succeeded"]
    assert not failed, failed[:2]
    return [{**job, "gpu_utilisation": gpu.readings} for job in results]


def summarise(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Throughput per round (its median across rounds); latencies, batches and stages over
    every job of every round."""
    rates = []
    for jobs in rounds:
        created = min(parse_iso(job["created_at"]) for job in jobs)
        completed = max(parse_iso(job["completed_at"]) for job in jobs)
        rates.append(len(jobs) / (completed - created))
    every = [job for jobs in rounds for job in jobs]
    totals = [job["timings"]["total_ms"] / 1000 for job in every]
    gpu = [u for jobs in rounds for u in jobs[0]["gpu_utilisation"]]
    return {
        "gpu_mean": statistics.fmean(gpu) if gpu else None,
        "gpu_max": max(gpu) if gpu else None,
        "jobs": len(every),
        "rates": rates,
        "jobs_per_s": statistics.median(rates),
        "p50": percentile(totals, 0.5),
        "p90": percentile(totals, 0.9),
        "p99": percentile(totals, 0.99),
        "batch_mean": statistics.fmean(job["batch_size"] for job in every),
        "batch_max": max(job["batch_size"] for job in every),
        "stages": {
            stage: statistics.fmean(job["timings"].get(stage, 0.0) for job in every)
            for stage in STAGES
        },
    }


def sweep(
    stack: Stack,
    photos: list[bytes],
    clients: int,
    settings: list[tuple[str, dict[str, str], tuple[str, ...]]],
    rounds: int,
) -> list[tuple[str, dict[str, Any]]]:
    """Step 3 for each setting, ``rounds`` times, interleaved so a machine's drift hits every
    setting alike; nothing without photos."""
    runs: dict[str, list[list[dict[str, Any]]]] = {}
    first = stack.worker  # run_stack stops this one; the others are stopped here
    try:
        for round_ in range(rounds if photos else 0):
            for index, (name, env, more) in enumerate(settings):
                if round_ or index:  # the stack's own worker runs the defaults first
                    print(f"round {round_ + 1}: {name}…", flush=True)
                    restart_worker(stack, f"gpu-{round_}-{index}", env, more)
                    forget_results(stack)  # the same photos again would be cache hits
                runs.setdefault(name, []).append(load(stack, photos, clients))
    finally:
        if stack.worker is not first:
            _stop(stack.worker)
    return [(name, summarise(jobs)) for name, jobs in runs.items()]


def forget_results(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    for key in client.scan_iter(f"{stack.env['CUTOUT_KEY_PREFIX']}:cache:*"):
        client.delete(key)


def more_gpu_workers(stack: Stack, count: int) -> list[Any]:
    """``count`` more gpu worker processes beside the stack's, each warmed before it returns."""
    workers = []
    for index in range(count):
        name = f"gpu{index + 2}"
        env = {**stack.env, "CUTOUT_METRICS_PORT": str(free_port())}
        workers.append(start_worker(env, stack.logs, name, "gpu"))
    for index in range(count):
        worker_engine(stack, f"gpu{index + 2}")
    return workers


def restart_worker(stack: Stack, name: str, env: dict[str, str], args: Sequence[str]) -> None:
    _stop(stack.worker)
    stack.worker = start_worker({**stack.env, **env}, stack.logs, name, "gpu", *args)
    worker_engine(stack, name)  # its "engine … warm" line: it takes jobs from now on


# --- the report -------------------------------------------------------------------------------


def load_table(rows: list[tuple[str, dict[str, Any]]], model_img_s: float) -> list[str]:
    lines = [
        "| setting | jobs | jobs/s (each round) | e2e / model-only | p50 s | p90 s | p99 s "
        "| mean batch | max batch | GPU busy, mean / max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in rows:
        each = ", ".join(f"{rate:.2f}" for rate in s["rates"])
        lines.append(
            f"| {name} | {s['jobs']} | {s['jobs_per_s']:.2f} ({each}) "
            f"| {s['jobs_per_s'] / model_img_s:.2f} "
            f"| {s['p50']:.1f} | {s['p90']:.1f} | {s['p99']:.1f} | {s['batch_mean']:.1f} "
            f"| {s['batch_max']} | {_share(s['gpu_mean'])} / {_share(s['gpu_max'])} |"
        )
    return lines


def _share(ratio: float | None) -> str:
    return "no GPU" if ratio is None else f"{ratio:.0%}"


def stage_table(stages: dict[str, float]) -> list[str]:
    lines = ["| stage (mean per job) | ms |", "|---|---:|"]
    lines += [f"| {stage} | {ms:.0f} |" for stage, ms in stages.items()]
    return lines


def main() -> None:
    global FORMAT
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--jobs", type=int, default=16, help="photos sent under load")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each single figure")
    parser.add_argument("--sweep", action="store_true", help="step 3 per batching setting")
    parser.add_argument("--rounds", type=int, default=1, help="times step 3 runs per setting")
    parser.add_argument("--format", default="webp", help="the jobs' output format")
    parser.add_argument("--gpu-workers", type=int, default=1, help="gpu worker processes")
    args = parser.parse_args()
    FORMAT = args.format

    began = time.perf_counter()
    print(f"making {args.jobs + args.repeats + 1} distinct 12 MP photos…", flush=True)
    with ThreadPoolExecutor() as pool:  # Pillow releases the GIL: one photo per core at once
        photos = list(
            pool.map(lambda i: distinct_phone_jpegs(1, i)[0], range(args.jobs + args.repeats + 1))
        )
    flush_every = int(celeryconfig.cutout_flush_every)
    service_env = {
        "CUTOUT_FLUSH_INTERVAL": str(celeryconfig.cutout_flush_interval),  # not the tests' 0.3
        "CUTOUT_RATE_LIMIT_SUBMIT": "100000 per minute",
        "CUTOUT_RATE_LIMIT_READ": "100000 per minute",
    }
    with tempfile.TemporaryDirectory(prefix="cutout-e2e-") as tmp:
        base = Path(tmp)
        port = free_port()
        redis_proc = start(port, base / "redis")
        try:
            with run_stack(f"redis://127.0.0.1:{port}/0", base, **service_env) as stack:
                engine = worker_engine(stack)
                print(f"stack up, worker engine {engine}; timing the model…", flush=True)
                segmenter, _ = load_segmenter(WorkerSettings.from_env(stack.env), engine)
                segmenter.warm_up()
                model = model_figures(segmenter, photos[0], flush_every, args.repeats)
                model_img_s = max(model["img_s_b1"], model[f"img_s_b{flush_every}"])
                job_s, job_timings = job_in_process(segmenter, photos[0], args.repeats)
                del segmenter
                single = single_through_service(stack, photos[args.jobs + 1 :])
                settings = SWEEP if args.sweep else SWEEP[:1]
                under_load = photos[1 : args.jobs + 1]
                extra = more_gpu_workers(stack, args.gpu_workers - 1)
                try:
                    rows = sweep(stack, under_load, args.clients, settings, args.rounds)
                finally:
                    for worker in extra:
                        _stop(worker)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)

    print(
        f"\n{platform.node()} ({os.cpu_count()} CPUs), {date.today()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), engine `{engine}`, flush_every {flush_every}, "
        f"flush_interval {celeryconfig.cutout_flush_interval} s, "
        f"{celeryconfig.cutout_batches_in_flight} batches in flight, "
        f"{args.gpu_workers} gpu worker process(es), format {FORMAT}; "
        f"{time.perf_counter() - began:.0f} s wall\n"
    )
    model_ms = model["model_s"] * 1000
    single_ms = statistics.median(seconds for seconds, _ in single) * 1000
    rows_single = [
        (f"bare model call (batch 1, {engine})", model_ms),
        ("whole job in-process (the worker's pipeline)", job_s * 1000),
        ("whole job through the service (client: submit → succeeded)", single_ms),
    ]
    print(f"| one 12 MP photo, four effects, {FORMAT} 2048 px | median ms | ratio to model |")
    print("|---|---:|---:|")
    for name, ms in rows_single:
        print(f"| {name} | {ms:.0f} | {ms / model_ms:.2f} |")
    print(
        "\nStages of those single jobs (ms; in-process: its last run; service: the median record)"
    )
    print("\n| stage | in-process | service |\n|---|---:|---:|")
    for stage in (*STAGES, "total_ms"):
        service = statistics.median(job["timings"].get(stage, 0.0) for _, job in single)
        print(f"| {stage} | {job_timings.get(stage, 0.0):.0f} | {service:.0f} |")
    print(
        f"\nModel-only throughput: {model['img_s_b1']:.2f} img/s at batch 1, "
        f"{model[f'img_s_b{flush_every}']:.2f} at batch {flush_every}; "
        f"the ratio below uses the better, {model_img_s:.2f}.\n"
    )
    if rows:
        print(f"Under load: {args.jobs} jobs from {args.clients} clients at once, per round.\n")
        print("\n".join(load_table(rows, model_img_s)))
        print()
        print("\n".join(stage_table(rows[0][1]["stages"])))


if __name__ == "__main__":
    main()
