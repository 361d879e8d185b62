"""``python -m workers.calibrate``: the static INT8 model the ``int8`` engine runs.

Exports the fp32 model to ONNX (once), then quantizes it statically with onnxruntime:
int8 weights per output channel, uint8 activations whose ranges come from running the
calibration photos (real photos, none of which the quality gate judges on) through it: each
tensor's range is the mean over the photos of its per-photo minimum and maximum, so one
photo's outliers do not stretch the 256 steps every photo is then cut into (the global
min/max did: the gate's worst photo went from IoU 0.888 to 0.965 with the mean, issue 21).
The first conv (it sees raw pixels) and everything from the second-to-last conv on (the last
decoder conv and its residual sum, the logits, the sigmoid, the final upsampling: where 8 bits
move the 0.5 boundary most) stay fp32 (chosen by measurement: see bench/RESULTS.md). Writes
``<model>-<hash>-int8.onnx`` into the model dir; then run ``python -m workers.engines.check``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workers.engines.base import EngineContext
from workers.engines.onnx_export import INPUT_NAME, exported_fp32
from workers.engines.ort import int8_path
from workers.photos import CALIBRATION_PHOTOS, load_photos
from workers.predictor import engine_context, preprocess
from workers.settings import WorkerSettings


@dataclass(frozen=True)
class Recipe:
    """How the INT8 model is made; the defaults are what ships (bench/int8_variants.py
    measures the others)."""

    per_channel: bool = True  # int8 weights per output channel (else one scale per tensor)
    # Ranges: the mean of the per-photo ranges (onnxruntime's CalibMovingAverage, computed in
    # one pass over all the photos), else the global min/max over them.
    moving_average: bool = True
    fp32_first_convs: int = 1  # leading convs left fp32
    fp32_last_convs: int = 2  # from the n-th last conv on, everything stays fp32


def fp32_nodes(model_path: Path, recipe: Recipe = Recipe()) -> list[str]:
    """Nodes left unquantized: the first conv(s), and the last convs with all that follows."""
    import onnx

    nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    convs = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    keep = [nodes[i] for i in convs[: recipe.fp32_first_convs]]
    keep += nodes[convs[-recipe.fp32_last_convs] :] if recipe.fp32_last_convs else []
    return [node.name for node in keep]


def calibrate_int8(
    ctx: EngineContext,
    photos: dict[str, np.ndarray],
    recipe: Recipe = Recipe(),
    dest: Path | None = None,
) -> Path:
    """Quantize the fp32 export with ranges from ``photos`` at ``ctx.size``; returns the path
    (by default the one the ``int8`` engine loads)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = [
        preprocess([torch.from_numpy(rgb).permute(2, 0, 1)], ctx.config, ctx.size, ctx.device)
        .cpu()
        .numpy()
        for rgb in photos.values()
    ]

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(inputs)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    source = exported_fp32(ctx)
    dest = dest or int8_path(ctx)
    partial = dest.with_name(f"{dest.stem}.{os.getpid()}.partial.onnx")
    with tempfile.TemporaryDirectory(prefix="cutout-calibrate-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(partial),
            Photos(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=fp32_nodes(prepared, recipe),
            extra_options={"CalibMovingAverage": recipe.moving_average},
        )
    os.replace(partial, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.calibrate", description=__doc__)
    parser.add_argument("--size", type=int, help="calibration input size (default: the model's)")
    args = parser.parse_args(argv)
    ctx = engine_context(WorkerSettings.from_env(), args.size)
    if ctx.device.type != "cpu":  # the INT8 engine runs on the CPU; calibrate it there
        ctx.device = torch.device("cpu")
    start = time.perf_counter()
    path = calibrate_int8(ctx, load_photos(CALIBRATION_PHOTOS))
    print(
        f"wrote {path} in {time.perf_counter() - start:.0f}s from {len(CALIBRATION_PHOTOS)} photos"
    )
    print("now run `python -m workers.engines.check` so `auto` may choose it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
