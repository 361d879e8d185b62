"""The decode stage: each job's bytes to an upright image at its output size, off the device.

Pillow decodes on the worker's thread pool (it releases the GIL); on CUDA a batch's JPEGs may
be decoded on the device in one call instead (``workers.device_decode``) and resized there.
A job that cannot be decoded fails alone with ``invalid_image``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from workers.device_decode import DeviceJpegDecoder
from workers.imageio import (
    DecodedImage,
    InvalidImage,
    decode,
    fit_within,
    header_icc_profile,
    probe,
)
from workers.pipeline.jobs import Failure, JobInput
from workers.pipeline.timing import ms

log = logging.getLogger("cutout.pipeline")

# Larger JPEGs are decoded by Pillow, which reads them downscaled (DCT scaling) so that they
# never reach the device at full size; nvJPEG decodes at full size only.
DEVICE_DECODE_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class Decoded:
    """One job's image, ready for the model and the effects."""

    job: JobInput
    image: torch.Tensor  # 3×H×W uint8 at the output size, on the host or the device
    model_image: torch.Tensor  # what the model resizes from (the same, or larger)
    icc_profile: bytes | None
    model_input: int  # the model's input side for this job
    decode_ms: float
    background: torch.Tensor | None = None  # the uploaded background, 3×h×w uint8 (host)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])


def decode_batch(
    jobs: Sequence[JobInput],
    pool: Executor,
    full_input: int,
    device_decoder: DeviceJpegDecoder | None,
) -> tuple[list[Decoded], dict[str, Failure], dict[str, float]]:
    """The decoded jobs in order, the failures, and every job's ``decode_ms``."""
    on_device = _decode_on_device(jobs, full_input, device_decoder) if device_decoder else {}
    rest = [job for job in jobs if job.job_id not in on_device]
    decoded = dict(on_device)
    decode_ms = {job_id: item.decode_ms for job_id, item in on_device.items()}
    failures: dict[str, Failure] = {}
    for job, image, seconds in pool.map(lambda job: _decode_one(job, full_input), rest):
        decode_ms[job.job_id] = ms(seconds)
        if isinstance(image, InvalidImage):
            failures[job.job_id] = Failure("invalid_image", str(image))
        else:
            decoded[job.job_id] = _from_pillow(job, image, job.model_input or full_input, seconds)
    wanted = [decoded[job.job_id] for job in jobs if job.background and job.job_id in decoded]
    for item, background in zip(wanted, pool.map(_decode_background, wanted), strict=True):
        if isinstance(background, InvalidImage):
            del decoded[item.job.job_id]
            failures[item.job.job_id] = Failure("invalid_background", str(background))
        else:
            decoded[item.job.job_id] = replace(item, background=background)
    return [decoded[j.job_id] for j in jobs if j.job_id in decoded], failures, decode_ms


def _decode_background(item: Decoded) -> torch.Tensor | InvalidImage:
    """The job's uploaded background, no larger than its output canvas needs."""
    job = item.job
    assert job.background is not None
    size = job.finishing.layout.size
    side = max(job.max_size, *size) if size else job.max_size
    try:
        rgb = decode(job.background, side).rgb
    except InvalidImage as exc:
        return InvalidImage(f"the background image: {exc}")
    return torch.from_numpy(rgb).permute(2, 0, 1)


def _decode_one(
    job: JobInput, full_input: int
) -> tuple[JobInput, DecodedImage | InvalidImage, float]:
    start = time.perf_counter()
    try:
        image: DecodedImage | InvalidImage = decode(
            job.data, job.max_size, job.model_input or full_input
        )
    except InvalidImage as exc:
        image = exc
    return job, image, time.perf_counter() - start


def _from_pillow(job: JobInput, image: DecodedImage, model_input: int, seconds: float) -> Decoded:
    tensor = torch.from_numpy(image.rgb).permute(2, 0, 1)
    source = image.model_rgb
    model = tensor if source is None else torch.from_numpy(source).permute(2, 0, 1)
    return Decoded(job, tensor, model, image.icc_profile, model_input, ms(seconds))


def _decode_on_device(
    jobs: Sequence[JobInput], full_input: int, decoder: DeviceJpegDecoder
) -> dict[str, Decoded]:
    """The batch's JPEGs decoded on the device in one call and resized there; {} when that
    fails (a JPEG nvJPEG cannot read): Pillow then decodes them, so a bad one fails alone."""
    start = time.perf_counter()
    chosen = []
    for job in jobs:
        try:
            info = probe(job.data)  # the header alone
        except InvalidImage:
            continue  # Pillow fails it, on its own
        if info.format == "jpeg" and info.width * info.height <= DEVICE_DECODE_MAX_PIXELS:
            chosen.append((job, header_icc_profile(job.data)))
    if not chosen:
        return {}
    try:
        images = decoder([job.data for job, _ in chosen])
    except Exception:
        log.warning("decoding on the device failed; Pillow decodes the batch", exc_info=True)
        return {}
    seconds = time.perf_counter() - start
    items = {}
    for (job, icc), image in zip(chosen, images, strict=True):
        model_input = job.model_input or full_input
        height, width = int(image.shape[1]), int(image.shape[2])
        out_w, out_h = fit_within(width, height, job.max_size)
        out = image if (out_w, out_h) == (width, height) else _resize(image, (out_h, out_w))
        model = image if min(out_h, out_w) < model_input else out
        items[job.job_id] = Decoded(job, out, model, icc, model_input, ms(seconds))
    return items


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 3×H×W uint8 image resized to ``size`` (H, W) where it is, antialiased."""
    resized = F.interpolate(
        image.unsqueeze(0).float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)
