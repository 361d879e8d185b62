"""One warm job in-process (decode → model → four effects → encode) next to the bare model call.

    .venv/bin/python -m bench.job_vs_model [--repeats 3]

Both run on the same 12 MP JPEG in the same process; the ratio is job time / model time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from bench.photos import phone_jpeg
from workers.effect_names import EFFECT_NAMES
from workers.imageio import decode
from workers.pipeline import JobInput, Pipeline
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings


def _median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    segmenter, _ = load_segmenter(WorkerSettings.from_env())
    segmenter.warm_up()
    data = phone_jpeg()
    pipeline = Pipeline(segmenter, ThreadPoolExecutor())
    image = torch.from_numpy(decode(data, 2048).rgb).permute(2, 0, 1)
    batch = segmenter.preprocess([image])

    model_s = _median_seconds(lambda: segmenter.engine.predict(batch), args.repeats)
    job = JobInput("bench", data, EFFECT_NAMES, 2048, "webp")
    job_s = _median_seconds(lambda: pipeline.run([job]), args.repeats)
    timings = pipeline.run([job])[0].timings

    print(
        f"machine: {platform.node()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"photo: 4032x3024 JPEG, {len(data) / 1e6:.1f} MB; outputs 2048 px webp, four effects\n")
    print("| what | median ms | ratio to model |")
    print("|---|---:|---:|")
    print(f"| bare model call (1024², {segmenter.engine.name}) | {model_s * 1000:.0f} | 1.00 |")
    print(f"| whole job in-process | {job_s * 1000:.0f} | {job_s / model_s:.2f} |")
    for stage in ("decode_ms", "inference_ms", "effects_ms", "encode_ms"):
        print(f"| - {stage} (last run) | {timings[stage]:.0f} | |")


if __name__ == "__main__":
    main()
