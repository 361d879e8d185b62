"""The quality gate: an engine's masks against eager's on the same real photos.

Per photo: IoU of the masks thresholded at 0.5, and the mean absolute difference of the
probabilities. An engine passes when its mean IoU over the photos reaches its bar (0.99 for
half, compiled, onnxruntime and tensorrt; 0.97 for int8); the worst photo is reported too.

A reduced input (adaptive quality under load) is gated against the full-quality reference:
eager at the model's own input size. Every engine that takes any input size, eager included,
runs at the reduced size, its masks are resized to the reference's, and it must reach
``REDUCED_INPUT_MIN_IOU``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import torch
import torch.nn.functional as F

from workers.engines.base import Engine, EngineContext, EngineUnavailable
from workers.engines.registry import ENGINES, build_engine
from workers.engines.report import EngineRecord
from workers.predictor import preprocess

# Mean IoU against eager at full size that a reduced input must keep. Measured on the gate's
# photos (cpu-2c, 2026-11-27): 768 px keeps 0.933 (eager) and 0.927 (int8), losing mostly on
# small subjects (rocket 0.68) while portraits stay at 0.98–0.99; 640 px keeps 0.902 and
# costs portraits too (astronaut 0.83). The bar admits the first, refuses the second.
REDUCED_INPUT_MIN_IOU = 0.92


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
    resize: bool = False,
) -> GateResult:
    """``resize``: the inputs are smaller than the reference's on purpose (a reduced input);
    each mask is resized to the reference's size before it is compared."""
    masks, seconds = timed_masks(engine, inputs)
    result = GateResult(engine.name, min_iou, seconds=seconds)
    for name, mask in masks.items():
        if resize and mask.dim() == 4 and mask.shape[:2] == reference[name].shape[:2]:
            size = reference[name].shape[2:]
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        if mask.shape != reference[name].shape:  # a wrong shape is a wrong mask
            result.ious[name], result.maes[name] = 0.0, 1.0
            continue
        result.ious[name] = mask_iou(mask, reference[name])
        result.maes[name] = (mask - reference[name]).abs().mean().item()
    return result


@dataclass
class GateRun:
    results: list[GateResult]  # the reference first: eager (IoU 1 by definition)
    skipped: dict[str, str]  # engines that cannot run here, and why
    reference_size: int | None = None  # set when the candidates ran at a reduced input

    def records(self) -> list[EngineRecord]:
        """What the report files; a reduced run files its candidates only (eager at the reduced
        input among them), each sped up against eager at full size."""
        eager_ms = self.results[0].ms_per_image
        judged = self.results[1:] if self.reference_size else self.results
        return [r.record(eager_ms) for r in judged]


def run_gate(
    ctx: EngineContext,
    names: Sequence[str],
    photos: dict[str, np.ndarray],
    reference_size: int | None = None,
) -> GateRun:
    """Hold each engine in ``names`` to eager on ``photos`` at ``ctx.size``.

    With a ``reference_size`` other than ``ctx.size``, eager at ``reference_size`` is the
    reference, and eager itself is judged at ``ctx.size`` too, all to ``REDUCED_INPUT_MIN_IOU``
    (engines built for fixed shapes are skipped)."""
    reference_size = reference_size or ctx.size
    reduced = reference_size != ctx.size
    images = {name: torch.from_numpy(rgb).permute(2, 0, 1) for name, rgb in photos.items()}

    def inputs_at(size: int) -> dict[str, torch.Tensor]:
        cpu = torch.device("cpu")
        return {name: preprocess([img], ctx.config, size, cpu) for name, img in images.items()}

    inputs = inputs_at(ctx.size)
    eager_engine = build_engine("eager", ctx)
    reference, seconds = timed_masks(eager_engine, inputs_at(reference_size) if reduced else inputs)
    eager = GateResult("eager", 1.0, dict.fromkeys(reference, 1.0), dict.fromkeys(reference, 0.0))
    eager.seconds = seconds
    run = GateRun([eager], {}, reference_size if reduced else None)
    if reduced:  # eager at the reduced input is judged like any other engine
        run.results.append(
            check_engine(eager_engine, REDUCED_INPUT_MIN_IOU, inputs, reference, resize=True)
        )
    for name in names:
        if name == "eager":
            continue
        if reduced and not ENGINES[name].any_input_size:
            run.skipped[name] = "built for fixed input shapes: it cannot run at a reduced input"
            continue
        try:
            engine = build_engine(name, ctx)
        except EngineUnavailable as exc:
            run.skipped[name] = str(exc)
            continue
        bar = REDUCED_INPUT_MIN_IOU if reduced else ENGINES[name].min_iou
        run.results.append(check_engine(engine, bar, inputs, reference, resize=reduced))
        del engine  # one candidate in memory at a time
    return run
