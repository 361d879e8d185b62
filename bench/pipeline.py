"""The worker's pipeline in this process, without Redis or Celery: what a GPU box can do.

    python -m bench.pipeline [--jobs 64] [--batch 16] [--in-flight 3] [--formats jpg+mask,webp]
                             [--baseline REVISION] [--max-size 2048]

The GPU image we are lent has no Redis, Celery or Flask, so this measures the part of a job that
runs there (decode → model → four effects → encode), with the worker's engine
(``CUTOUT_ENGINE``) on its device, in one run:

1. the bare model call on a 12 MP photo at batch 1, and model-only throughput at ``--batch``;
2. one warm job (batch 1, the four effects) per format: its time and its ratio to step 1;
3. ``--jobs`` distinct 12 MP JPEGs (every third turned by EXIF) in batches of ``--batch``,
   ``--in-flight`` batches at once as the worker's thread pool runs them: jobs/s, its ratio
   to the model-only throughput, each stage's mean per batch, and per batch the device lock's
   hold time next to the device work in it (CUDA events; on a CPU the same wall time); with
   ``--baseline REVISION`` the pipeline as it was at that git revision runs the same stream
   (``bench.baseline``), for before/after stage means in one run;
4. decoding those JPEGs: Pillow (draft mode, on the pool) against nvJPEG batched, per image.

The queue's own overhead (API, Redis, Celery, polling) is measured by ``bench.e2e`` where
the whole stack runs. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import torch

from bench.baseline import pipeline_at
from bench.photos import phone_jpeg
from bench.timing import median_seconds, sync
from contract.effects import EFFECT_NAMES
from workers.device_decode import device_jpeg_decoder
from workers.engines.keys import device_name
from workers.imageio import decode
from workers.pipeline import BatchResult, JobInput, Pipeline
from workers.predictor import Segmenter, load_segmenter
from workers.settings import WorkerSettings

MAX_SIZE = 2048  # the outputs' long edge, as the service's default (--max-size)
STAGES = ("decode", "wait_device", "inference", "effects", "host")
SUBJECTS = ("coffee", "astronaut", "chelsea", "rocket")


def phone_photos(count: int, pool: ThreadPoolExecutor) -> list[bytes]:
    """``count`` distinct 12 MP uploads (every third turned by EXIF), made on the pool."""

    def one(i: int) -> bytes:
        return phone_jpeg(SUBJECTS[i % 4], seed=i, orientation=6 if i % 3 == 2 else 1)

    return list(pool.map(one, range(count)))


def model_only(segmenter: Segmenter, photo: bytes, batch: int, repeats: int) -> dict[str, float]:
    image = torch.from_numpy(decode(photo, MAX_SIZE, segmenter.config.input_size).rgb)
    one = segmenter.preprocess([image.permute(2, 0, 1)])
    many = one.expand(batch, -1, -1, -1).contiguous()
    engine, device = segmenter.engine, segmenter.device
    single = median_seconds(lambda: engine.predict(one), repeats, device)
    batched = median_seconds(lambda: engine.predict(many), repeats, device)
    return {"b1_s": single, "b1_img_s": 1 / single, "batch_img_s": batch / batched}


def one_job(
    pipeline: Pipeline, photo: bytes, fmt: str, repeats: int, max_size: int
) -> tuple[float, dict]:
    job = JobInput("one", photo, EFFECT_NAMES, max_size, fmt)
    seconds = median_seconds(lambda: pipeline.run([job]), repeats, pipeline.segmenter.device)
    return seconds, pipeline.run([job])[0].timings


def throughput(
    pipeline: Pipeline,
    photos: Sequence[bytes],
    fmt: str,
    batch: int,
    in_flight: int,
    max_size: int = MAX_SIZE,
) -> tuple[float, list[BatchResult]]:
    """Jobs/s with ``in_flight`` threads taking batches in turn, as the worker's pool does."""
    jobs = [JobInput(f"{fmt}-{i}", p, EFFECT_NAMES, max_size, fmt) for i, p in enumerate(photos)]
    batches = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
    start = time.perf_counter()
    with ThreadPoolExecutor(in_flight, thread_name_prefix="batch") as batch_threads:
        results = list(batch_threads.map(pipeline.process, batches))
    seconds = time.perf_counter() - start
    failed = [o for r in results for o in r.outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed: {failed[0].error_message}")
    return len(jobs) / seconds, results


def stage_means(results: list[BatchResult]) -> dict[str, float]:
    """Each stage's mean wall time per batch, ms, and the lock's hold and the device work.

    A baseline pipeline (one module, before the host stage left the lock) names its last
    stage ``encode`` and records no hold: its lock covered inference and effects."""
    stages: dict[str, list[float]] = {}
    for r in results:
        for name, (start, end) in r.spans.items():
            stages.setdefault("host" if name == "encode" else name, []).append((end - start) * 1000)
        held = getattr(r, "lock_held_ms", None)
        if held is None:
            (start, _), (_, end) = r.spans["inference"], r.spans["effects"]
            held = (end - start) * 1000
        stages.setdefault("lock_held", []).append(held)
        stages.setdefault("device_work", []).append(getattr(r, "device_ms", float("nan")))
    return {name: statistics.mean(v) for name, v in stages.items()}


def lock_lines(label: str, results: list[BatchResult]) -> list[str]:
    """Per batch: the device lock's hold next to the device work in it, ms."""
    pairs = ", ".join(f"{r.lock_held_ms:.0f}/{r.device_ms:.0f}" for r in results)
    return [f"- {label}, lock held / device work per batch (ms): {pairs}"]


def decode_rates(
    photos: Sequence[bytes],
    pool: ThreadPoolExecutor,
    threads: int,
    device: torch.device,
    model_side: int,
) -> list[str]:
    rows = []
    start = time.perf_counter()
    list(pool.map(lambda p: decode(p, MAX_SIZE, model_side), photos))
    rows.append(
        f"| Pillow, draft mode, {threads} threads "
        f"| {(time.perf_counter() - start) * 1000 / len(photos):.2f} |"
    )
    decoder = device_jpeg_decoder(device)
    if decoder is not None:
        decoder(photos[:2])  # warm: nvJPEG's handles
        sync(device)
        start = time.perf_counter()
        decoder(photos)
        sync(device)
        rows.append(
            f"| nvJPEG, one batched call, upright on the device "
            f"| {(time.perf_counter() - start) * 1000 / len(photos):.2f} |"
        )
    return ["| decoder | ms/img (wall) |", "|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--batch", type=int, help="batch size (default: CUTOUT_FLUSH_EVERY)")
    parser.add_argument("--in-flight", type=int, default=3, help="batches at once (worker: 3)")
    parser.add_argument("--formats", default="jpg+mask,webp")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", help="also run the pipeline of this git revision")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="outputs' long edge")
    args = parser.parse_args(argv)

    settings = WorkerSettings.from_env()
    batch = args.batch or settings.max_batch
    threads = settings.encode_threads or os.cpu_count() or 1
    segmenter, _ = load_segmenter(settings)
    segmenter.warm_up()
    device = segmenter.device
    day = datetime.now(UTC).date().isoformat()
    print(
        f"## Pipeline in process on {device_name(device)}, engine {segmenter.engine.name}, "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {threads} pool threads, {day}\n"
    )
    with ThreadPoolExecutor(threads) as pool:
        photos = phone_photos(args.jobs, pool)
        pipeline = Pipeline(segmenter, pool)
        model = model_only(segmenter, photos[0], batch, args.repeats)
        print(
            f"Model only, 1024 px: batch 1 {model['b1_s'] * 1000:.2f} ms "
            f"({model['b1_img_s']:.1f} img/s); batch {batch} {model['batch_img_s']:.1f} img/s.\n"
        )
        print(
            "| format | one warm job ms | vs bare model call | decode | inference | effects "
            "| encode |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        formats = args.formats.split(",")
        for fmt in formats:
            seconds, t = one_job(pipeline, photos[0], fmt, args.repeats, args.max_size)
            print(
                f"| {fmt} | {seconds * 1000:.1f} | {seconds / model['b1_s']:.2f}x "
                f"| {t.get('decode_ms', 0):.1f} | {t.get('inference_ms', 0):.1f} "
                f"| {t.get('effects_ms', 0):.1f} | {t.get('encode_ms', 0):.1f} |",
                flush=True,
            )
        print(
            f"\n{args.jobs} distinct 12 MP JPEGs, batches of {batch}, {args.in_flight} in "
            f"flight, outputs at {args.max_size} px (stage means per batch, wall ms; the lock is "
            "held for inference and effects):\n"
        )
        print(
            "| format | pipeline | jobs/s | vs model-only | decode | wait device | inference "
            "| effects | host (after the lock) | lock held | device work |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        variants = [("this tree", pipeline)]
        if args.baseline:
            before = pipeline_at(args.baseline)
            if before is None:
                print(f"(no pipeline at {args.baseline}: git or the revision is missing here)")
            else:
                variants.append((args.baseline, before(segmenter, pool)))
        notes: list[str] = []
        for fmt in formats:
            for label, variant in variants:
                warm = photos[: batch * 2]
                throughput(variant, warm, fmt, batch, args.in_flight, args.max_size)
                rate, results = throughput(
                    variant, photos, fmt, batch, args.in_flight, args.max_size
                )
                s = stage_means(results)
                print(
                    f"| {fmt} | {label} | {rate:.2f} | {rate / model['batch_img_s']:.0%} "
                    + " ".join(f"| {s.get(k, 0):.0f}" for k in (*STAGES, "lock_held"))
                    + f" | {s['device_work']:.0f} |",
                    flush=True,
                )
                if hasattr(results[0], "lock_held_ms"):
                    notes += lock_lines(f"{fmt}, {label}", results)
        print("\n" + "\n".join(notes))
        print()
        print("\n".join(decode_rates(photos, pool, threads, device, segmenter.config.input_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
