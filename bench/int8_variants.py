"""``python -m bench.int8_variants``: which INT8 recipe lifts the gate's worst photo.

Calibrates each variant of ``workers.calibrate.Recipe`` (photos, range statistic, per-channel
weights, layers kept fp32) into a scratch model dir, runs it on the gate's photos against
eager in the same process, and prints one markdown row per variant as soon as it is measured:
worst and mean IoU, the worst photo, ms/img (median, batch 1) and the speed ratio against the
current recipe measured in the same run. Nothing is written to the real model dir.

    python -m bench.int8_variants --size 1024 --threads 1 [--only current,more-photos]

The load on a shared machine drifts between variants, so ``--retime N`` times every variant
again afterwards, in alternation (N rounds over the gate's photos), for the speed ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from workers.calibrate import Recipe, calibrate_int8
from workers.engines.base import EngineContext
from workers.engines.gate import check_engine, timed_masks
from workers.engines.ort import OnnxRuntimeEngine
from workers.engines.registry import build_engine
from workers.photos import CALIBRATION_PHOTOS, EXTRA_CALIBRATION_PHOTOS, GATE_PHOTOS, load_photos
from workers.predictor import engine_context, preprocess
from workers.settings import WorkerSettings

MORE = CALIBRATION_PHOTOS + EXTRA_CALIBRATION_PHOTOS
VARIANTS: dict[str, tuple[tuple[str, ...], Recipe]] = {
    # What shipped before issue 21: the global min/max over the photos.
    "current": (CALIBRATION_PHOTOS, Recipe(moving_average=False)),
    "more-photos": (MORE, Recipe(moving_average=False)),
    "mean-of-ranges": (CALIBRATION_PHOTOS, Recipe(moving_average=True)),
    "fp32-last-3": (CALIBRATION_PHOTOS, Recipe(moving_average=False, fp32_last_convs=3)),
    "fp32-first-2": (CALIBRATION_PHOTOS, Recipe(moving_average=False, fp32_first_convs=2)),
    "more-photos+mean": (MORE, Recipe(moving_average=True)),
    "mean+fp32-first-2": (CALIBRATION_PHOTOS, Recipe(moving_average=True, fp32_first_convs=2)),
    "per-tensor-weights": (CALIBRATION_PHOTOS, Recipe(moving_average=False, per_channel=False)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.int8_variants", description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--retime", type=int, default=0, help="alternating timing rounds")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n]
    if "current" not in names:
        names.insert(0, "current")  # the baseline every ratio is against

    settings = WorkerSettings.from_env()
    with tempfile.TemporaryDirectory(prefix="cutout-int8-variants-") as tmp:
        scratch = Path(tmp)
        checkpoint = settings.checkpoint_path()
        (scratch / checkpoint.name).symlink_to(checkpoint)
        settings = replace(settings, model_dir=scratch, device="cpu")
        ctx = engine_context(settings, args.size)
        photos = load_photos(GATE_PHOTOS)
        inputs = {
            n: preprocess([torch.from_numpy(p).permute(2, 0, 1)], ctx.config, ctx.size, ctx.device)
            for n, p in photos.items()
        }
        start = time.perf_counter()
        reference, eager_s = timed_masks(build_engine("eager", ctx), inputs)
        eager_ms = sorted(eager_s)[len(eager_s) // 2] * 1000
        print(
            f"INT8 variants, {ctx.size} px, torch/onnxruntime on {args.threads} thread(s), "
            f"{len(photos)} gate photos; eager {eager_ms:.0f} ms/img "
            f"({time.perf_counter() - start:.0f}s)\n",
            flush=True,
        )
        print("| variant | calib. photos | worst IoU (photo) | mean IoU | ms/img | vs current |")
        print("|---|---|---|---|---|---|", flush=True)
        current_ms = None
        paths: dict[str, Path] = {}
        for name in names:
            calibration, recipe = VARIANTS[name]
            began = time.perf_counter()
            path = calibrate_int8(
                ctx, load_photos(calibration), recipe, dest=scratch / f"{name}.onnx"
            )
            calibrated = time.perf_counter() - began
            paths[name] = path
            engine = OnnxRuntimeEngine(ctx, path)
            result = check_engine(engine, 0.97, inputs, reference)
            worst = min(result.ious, key=lambda k: result.ious[k])
            current_ms = current_ms or result.ms_per_image
            print(
                f"| {name} | {len(calibration)} | {result.iou_min:.4f} ({worst}) "
                f"| {result.iou_mean:.4f} | {result.ms_per_image:.0f} "
                f"| {current_ms / result.ms_per_image:.2f}x |"
                f"  <!-- calibrated in {calibrated:.0f}s; per photo "
                + " ".join(f"{k}={v:.3f}" for k, v in result.ious.items())
                + " -->",
                flush=True,
            )
            del engine
        if args.retime:
            retime(ctx, paths, inputs, args.retime)
    return 0


def retime(
    ctx: EngineContext, paths: dict[str, Path], inputs: dict[str, torch.Tensor], rounds: int
) -> None:
    """Each variant's median ms/img over ``rounds`` alternating passes of the gate's photos."""
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            _, taken = timed_masks(OnnxRuntimeEngine(ctx, path), inputs)
            seconds[name] += taken
    base = statistics.median(seconds["current"])
    print(f"\nRe-timed in alternation ({rounds} rounds x {len(inputs)} photos, median):\n")
    print("| variant | ms/img | vs current |\n|---|---|---|")
    for name, taken in seconds.items():
        ms = statistics.median(taken)
        print(f"| {name} | {ms * 1000:.0f} | {base / ms:.2f}x |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
