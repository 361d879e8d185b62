"""One micro-batch of jobs: decode → segment → effects → encode.

Each job fails alone: a bad image gets its own ``invalid_image`` outcome and the rest of the
batch goes on. Decoding and encoding run on a thread pool (Pillow releases the GIL).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch

from workers.effects import apply_effects
from workers.imageio import (
    CONTENT_TYPES,
    DecodedImage,
    InvalidImage,
    decode,
    encode_mask,
    encode_rgba,
)
from workers.predictor import Segmenter


@dataclass(frozen=True)
class JobInput:
    job_id: str
    data: bytes
    effects: tuple[str, ...]
    max_size: int
    format: str


@dataclass(frozen=True)
class EncodedOutput:
    name: str  # an effect name, or "mask"
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


@dataclass
class JobOutcome:
    job_id: str
    outputs: list[EncodedOutput] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 0  # images that went through the model together with this one

    @property
    def ok(self) -> bool:
        return self.error_code is None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class Pipeline:
    def __init__(self, segmenter: Segmenter, pool: Executor) -> None:
        self.segmenter = segmenter
        self.pool = pool

    def run(self, jobs: Sequence[JobInput]) -> list[JobOutcome]:
        outcomes = {job.job_id: JobOutcome(job.job_id) for job in jobs}
        decoded = self._decode(jobs, outcomes)
        if decoded:
            self._segment_and_render(decoded, outcomes)
        return [outcomes[job.job_id] for job in jobs]

    def _decode(
        self, jobs: Sequence[JobInput], outcomes: dict[str, JobOutcome]
    ) -> list[tuple[JobInput, DecodedImage]]:
        def one(job: JobInput) -> tuple[JobInput, DecodedImage | InvalidImage, float]:
            start = time.perf_counter()
            try:
                image: DecodedImage | InvalidImage = decode(job.data, job.max_size)
            except InvalidImage as exc:
                image = exc
            return job, image, time.perf_counter() - start

        ready = []
        for job, image, seconds in self.pool.map(one, jobs):
            outcomes[job.job_id].timings["decode_ms"] = _ms(seconds)
            if isinstance(image, InvalidImage):
                outcomes[job.job_id].error_code = "invalid_image"
                outcomes[job.job_id].error_message = str(image)
            else:
                ready.append((job, image))
        return ready

    def _segment_and_render(
        self, decoded: list[tuple[JobInput, DecodedImage]], outcomes: dict[str, JobOutcome]
    ) -> None:
        tensors = [torch.from_numpy(img.rgb).permute(2, 0, 1) for _, img in decoded]
        start = time.perf_counter()
        masks = self.segmenter.predict(tensors)
        inference = time.perf_counter() - start
        for (job, image), tensor, mask in zip(decoded, tensors, masks, strict=True):
            outcome = outcomes[job.job_id]
            outcome.timings["inference_ms"] = _ms(inference)
            outcome.batch_size = len(decoded)
            try:
                self._render(job, image, tensor, mask, outcome)
            except Exception as exc:  # one job's failure never takes its batch-mates down
                outcome.error_code = "processing_failed"
                outcome.error_message = f"{type(exc).__name__}: {exc}"

    def _render(
        self,
        job: JobInput,
        image: DecodedImage,
        tensor: torch.Tensor,
        mask: torch.Tensor,
        outcome: JobOutcome,
    ) -> None:
        start = time.perf_counter()
        rendered = apply_effects(
            tensor.to(mask.device).unsqueeze(0).float() / 255, mask.unsqueeze(0), job.effects
        )
        arrays = {name: _to_uint8_hwc(t[0]) for name, t in rendered.items()}
        mask_u8 = _to_uint8_hwc(mask)[..., 0]
        outcome.timings["effects_ms"] = _ms(time.perf_counter() - start)
        start = time.perf_counter()
        outcome.outputs = list(self._encode(job, image, arrays, mask_u8))
        outcome.timings["encode_ms"] = _ms(time.perf_counter() - start)

    def _encode(
        self,
        job: JobInput,
        image: DecodedImage,
        arrays: dict[str, np.ndarray],
        mask: np.ndarray,
    ) -> Iterable[EncodedOutput]:
        height, width = mask.shape
        pending = [
            (
                name,
                self.pool.submit(encode_rgba, array, job.format, image.icc_profile),
                CONTENT_TYPES[job.format],
                job.format,
            )
            for name, array in arrays.items()
        ]
        pending.append(("mask", self.pool.submit(encode_mask, mask), "image/png", "png"))
        for name, future, content_type, extension in pending:
            yield EncodedOutput(name, future.result(), content_type, extension, width, height)


def _to_uint8_hwc(t: torch.Tensor) -> np.ndarray:
    """C×H×W float in [0, 1] → H×W×C uint8 on the CPU."""
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
