"""The quality gate: an engine's masks against eager's on the same real photos.

Per photo: IoU of the masks thresholded at 0.5, and the mean absolute difference of the
probabilities. An engine passes when its mean IoU over the photos reaches its bar (0.99 for
half, compiled, onnxruntime and tensorrt; 0.97 for int8); the worst photo is reported too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import torch

from workers.engines.base import Engine, EngineContext, EngineUnavailable
from workers.engines.registry import ENGINES, build_engine
from workers.engines.report import EngineRecord
from workers.predictor import preprocess


def mask_iou(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.5) -> float:
    """IoU of two probability masks thresholded at ``threshold`` (1.0 when both are empty)."""
    fa, fb = a > threshold, b > threshold
    union = (fa | fb).sum().item()
    return 1.0 if union == 0 else (fa & fb).sum().item() / union


@dataclass
class GateResult:
    engine: str
    min_iou: float
    ious: dict[str, float] = field(default_factory=dict)
    maes: dict[str, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    @property
    def iou_mean(self) -> float:
        return statistics.fmean(self.ious.values())

    @property
    def iou_min(self) -> float:
        return min(self.ious.values())

    @property
    def mae(self) -> float:
        return statistics.fmean(self.maes.values())

    @property
    def ms_per_image(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def passed(self) -> bool:
        return self.iou_mean >= self.min_iou

    def record(self, eager_ms: float) -> EngineRecord:
        return EngineRecord(
            engine=self.engine,
            passed=self.passed,
            min_iou=self.min_iou,
            iou_mean=round(self.iou_mean, 5),
            iou_min=round(self.iou_min, 5),
            mae=round(self.mae, 6),
            ms_per_image=round(self.ms_per_image, 2),
            speedup=round(eager_ms / self.ms_per_image, 3),
            photos=len(self.ious),
            checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def timed_masks(
    engine: Engine, inputs: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Each input (1×3×S×S) through ``engine`` after one untimed warm-up call; CPU masks and
    the seconds each call took."""
    first = next(iter(inputs.values()))
    engine.predict(first.to(engine.device))
    masks, seconds = {}, []
    for name, x in inputs.items():
        x = x.to(engine.device)
        start = time.perf_counter()
        out = engine.predict(x)
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        seconds.append(time.perf_counter() - start)
        masks[name] = out.float().cpu()
    return masks, seconds


def check_engine(
    engine: Engine,
    min_iou: float,
    inputs: dict[str, torch.Tensor],
    reference: dict[str, torch.Tensor],
) -> GateResult:
    masks, seconds = timed_masks(engine, inputs)
    result = GateResult(engine.name, min_iou, seconds=seconds)
    for name, mask in masks.items():
        if mask.shape != reference[name].shape:  # a wrong shape is a wrong mask
            result.ious[name], result.maes[name] = 0.0, 1.0
            continue
        result.ious[name] = mask_iou(mask, reference[name])
        result.maes[name] = (mask - reference[name]).abs().mean().item()
    return result


@dataclass
class GateRun:
    results: list[GateResult]  # eager first (IoU 1 by definition: it is the reference)
    skipped: dict[str, str]  # engines that cannot run here, and why

    def records(self) -> list[EngineRecord]:
        eager_ms = self.results[0].ms_per_image
        return [r.record(eager_ms) for r in self.results]


def run_gate(ctx: EngineContext, names: Sequence[str], photos: dict[str, np.ndarray]) -> GateRun:
    """Hold each engine in ``names`` to eager on ``photos`` at ``ctx.size``."""
    images = {name: torch.from_numpy(rgb).permute(2, 0, 1) for name, rgb in photos.items()}
    inputs = {
        name: preprocess([img], ctx.config, ctx.size, torch.device("cpu"))
        for name, img in images.items()
    }
    reference, seconds = timed_masks(build_engine("eager", ctx), inputs)
    eager = GateResult("eager", 1.0, dict.fromkeys(reference, 1.0), dict.fromkeys(reference, 0.0))
    eager.seconds = seconds
    run = GateRun([eager], {})
    for name in names:
        if name == "eager":
            continue
        try:
            engine = build_engine(name, ctx)
        except EngineUnavailable as exc:
            run.skipped[name] = str(exc)
            continue
        run.results.append(check_engine(engine, ENGINES[name].min_iou, inputs, reference))
        del engine  # one candidate in memory at a time
    return run
