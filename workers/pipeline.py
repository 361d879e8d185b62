"""One micro-batch of jobs: decode → segment → effects → encode.

Each job fails alone: a bad image gets its own ``invalid_image`` outcome and the rest of the
batch goes on. Images of the same size go through the effects as one batch on the model's
device (one fused pass); decoding and encoding run on a thread pool (Pillow releases the GIL),
every output of the batch at once. On CUDA the JPEG parts of ``jpg+mask`` may be encoded on
the device (see ``workers.outputs.device_jpeg_encoder``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from workers.effect_names import EFFECT_NAMES
from workers.effects import EFFECTS, render
from workers.imageio import (
    CODECS,
    JPEG_QUALITY,
    DecodedImage,
    InvalidImage,
    add_jpeg_icc_profile,
    decode,
    encode_mask,
)
from workers.outputs import MASK_CODEC, DeviceJpegEncoder, codec_for, encode_effect
from workers.outputs import device_jpeg_encoder as find_device_jpeg_encoder
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


class _Item:
    """One decoded job on its way through the effects and the encoders."""

    def __init__(self, job: JobInput, image: DecodedImage, tensor: torch.Tensor) -> None:
        self.job = job
        self.image = image
        self.tensor = tensor  # 3×H×W uint8
        self.mask: torch.Tensor | None = None  # 1×H×W float on the device
        # name → (future or finished bytes, codec), in the order the outputs are listed.
        self.pending: dict[str, tuple[Future[bytes] | bytes, str]] = {}
        self.encode_started = 0.0
        self.device_encode = 0.0


class Pipeline:
    def __init__(
        self,
        segmenter: Segmenter,
        pool: Executor,
        device_jpeg: DeviceJpegEncoder | None | Literal["auto"] = "auto",
    ) -> None:
        self.segmenter = segmenter
        self.pool = pool
        self.device_jpeg = (
            find_device_jpeg_encoder(segmenter.device) if device_jpeg == "auto" else device_jpeg
        )

    def run(self, jobs: Sequence[JobInput]) -> list[JobOutcome]:
        outcomes = {job.job_id: JobOutcome(job.job_id) for job in jobs}
        decoded = self._decode(jobs, outcomes)
        if decoded:
            self._segment_and_render(decoded, outcomes)
        return [outcomes[job.job_id] for job in jobs]

    def _decode(self, jobs: Sequence[JobInput], outcomes: dict[str, JobOutcome]) -> list[_Item]:
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
                ready.append(_Item(job, image, torch.from_numpy(image.rgb).permute(2, 0, 1)))
        return ready

    def _segment_and_render(self, items: list[_Item], outcomes: dict[str, JobOutcome]) -> None:
        start = time.perf_counter()
        masks = self.segmenter.predict([item.tensor for item in items])
        inference = time.perf_counter() - start
        groups: dict[tuple[int, ...], list[_Item]] = defaultdict(list)
        for item, mask in zip(items, masks, strict=True):
            item.mask = mask
            outcomes[item.job.job_id].timings["inference_ms"] = _ms(inference)
            outcomes[item.job.job_id].batch_size = len(items)
            groups[tuple(item.tensor.shape)].append(item)
        started: list[_Item] = []
        for group in groups.values():
            try:
                self._render(group, outcomes)
                started.extend(group)
            except Exception as exc:
                if len(group) == 1:
                    _fail(outcomes[group[0].job.job_id], exc)
                    continue
                # Retried image by image, so a failure stays with the job that caused it.
                for item in group:
                    item.pending.clear()
                    try:
                        self._render([item], outcomes)
                        started.append(item)
                    except Exception as exc_alone:
                        _fail(outcomes[item.job.job_id], exc_alone)
        for item in started:
            self._collect(item, outcomes[item.job.job_id])

    def _render(self, items: list[_Item], outcomes: dict[str, JobOutcome]) -> None:
        """One fused effects pass over same-size images, then their encodes submitted."""
        start = time.perf_counter()
        device = self.segmenter.device
        wanted = {name for item in items for name in item.job.effects}
        names = [name for name in EFFECT_NAMES if name in wanted]
        image = torch.stack([item.tensor for item in items]).to(device).float().div_(255)
        masks = [item.mask for item in items if item.mask is not None]
        rendered = render(image, torch.stack(masks).to(device), names)
        alpha = _to_uint8(rendered.alpha)
        colours = {name: _to_uint8(colour) for name, colour in rendered.colours.items()}
        device_jpegs = self._encode_on_device(items, colours)
        alpha_host = alpha[:, 0].cpu().numpy()
        host = {name: c.permute(0, 2, 3, 1).cpu().numpy() for name, c in colours.items()}
        seconds = time.perf_counter() - start
        for index, item in enumerate(items):
            outcomes[item.job.job_id].timings["effects_ms"] = _ms(seconds - item.device_encode)
            colours_host = {n: host[n][index] for n in item.job.effects}
            self._submit(item, colours_host, alpha_host[index], device_jpegs.get(index, {}))

    def _encode_on_device(
        self, items: list[_Item], colours: dict[str, torch.Tensor]
    ) -> dict[int, dict[str, bytes]]:
        """JPEG parts encoded where the pixels are, in one batched call (CUDA only)."""
        if self.device_jpeg is None:
            return {}
        parts = [
            (index, name)
            for index, item in enumerate(items)
            for name in item.job.effects
            if codec_for(EFFECTS[name], item.job.format) == "jpeg"
        ]
        if not parts:
            return {}
        start = time.perf_counter()
        data = self.device_jpeg([colours[name][index] for index, name in parts], JPEG_QUALITY)
        seconds = time.perf_counter() - start
        done: dict[int, dict[str, bytes]] = defaultdict(dict)
        for (index, name), blob in zip(parts, data, strict=True):
            icc = items[index].image.icc_profile
            done[index][name] = add_jpeg_icc_profile(blob, icc) if icc else blob
            items[index].device_encode = seconds
        return done

    def _submit(
        self,
        item: _Item,
        colours: dict[str, np.ndarray],
        alpha: np.ndarray,
        encoded: dict[str, bytes],
    ) -> None:
        """Queue the item's encodes on the pool; ``encoded`` are parts already done."""
        job = item.job
        item.encode_started = time.perf_counter()
        for name in job.effects:
            codec = codec_for(EFFECTS[name], job.format)
            if name in encoded:
                item.pending[name] = (encoded[name], codec)
                continue
            future = self.pool.submit(
                encode_effect, name, colours[name], alpha, job.format, item.image.icc_profile
            )
            item.pending[name] = (future, codec)
        item.pending["mask"] = (self.pool.submit(encode_mask, alpha), MASK_CODEC)

    def _collect(self, item: _Item, outcome: JobOutcome) -> None:
        height, width = item.tensor.shape[1:]
        try:
            for name, (result, codec) in item.pending.items():
                data = result if isinstance(result, bytes) else result.result()
                content_type, extension = CODECS[codec]
                outcome.outputs.append(
                    EncodedOutput(name, data, content_type, extension, width, height)
                )
        except Exception as exc:
            outcome.outputs = []
            _fail(outcome, exc)
            return
        seconds = time.perf_counter() - item.encode_started + item.device_encode
        outcome.timings["encode_ms"] = _ms(seconds)


def _fail(outcome: JobOutcome, exc: Exception) -> None:
    outcome.error_code = "processing_failed"
    outcome.error_message = f"{type(exc).__name__}: {exc}"


def _to_uint8(t: torch.Tensor) -> torch.Tensor:
    """B×C×H×W float in [0, 1] → uint8, on its device."""
    return t.clamp(0, 1).mul_(255).round_().to(torch.uint8)
