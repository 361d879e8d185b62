"""One micro-batch of jobs: decode → segment → effects → encode.

Stages overlap across batches: a worker runs a few batches at once (Celery's thread pool) and
only the device stage (the model, then the effects on the model's device) takes one batch at a
time, behind a lock. Decoding and encoding run on a shared thread pool (Pillow releases the
GIL), so while batch k is on the device, batch k+1 decodes and batch k−1 encodes and is
stored. ``process`` returns each stage's wall-clock span, which the worker logs per batch.

Each job fails alone: a bad image gets its own ``invalid_image`` outcome and the rest of the
batch goes on. Running out of device memory (``torch.OutOfMemoryError``, CUDA's OOM) splits the
model call, or the effects pass, in halves down to one image; a job that does not fit even
alone fails with ``resources_exhausted``. Images of the same size go through the effects as
one batch on the model's device (one fused pass); every output of the batch is encoded at
once on the pool. A job may ask for a preview: small WebPs of its effects, encoded and handed
to ``on_preview`` before its full outputs are encoded. On CUDA a batch's JPEGs may be decoded
on the device in one call (``workers.device_decode``), and the JPEG parts of ``jpg+mask``
encoded there (``workers.outputs.device_jpeg_encoder``); Pillow on the pool otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from workers.device_decode import DeviceJpegDecoder, device_jpeg_decoder
from workers.effect_names import EFFECT_NAMES
from workers.effects import EFFECTS, Rendered, render
from workers.imageio import (
    CODECS,
    JPEG_QUALITY,
    DecodedImage,
    InvalidImage,
    add_jpeg_icc_profile,
    decode,
    encode_image,
    encode_mask,
    fit_within,
    header_icc_profile,
    probe,
)
from workers.outputs import MASK_CODEC, DeviceJpegEncoder, codec_for, encode_effect
from workers.outputs import device_jpeg_encoder as find_device_jpeg_encoder
from workers.predictor import Segmenter

log = logging.getLogger("cutout.pipeline")

PREVIEW_SIDE = 256  # long edge of a preview, px
PREVIEW_CODEC = "webp"  # lossy colour, exact alpha: every effect, whatever the job's format
# Larger JPEGs are decoded by Pillow, which reads them downscaled (DCT scaling) so that they
# never reach the device at full size; nvJPEG decodes at full size only.
DEVICE_DECODE_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class JobInput:
    job_id: str
    data: bytes
    effects: tuple[str, ...]
    max_size: int
    format: str
    model_input: int | None = None  # the model's input side for this job; None: the model's
    preview: bool = False  # hand small previews of its effects to ``on_preview`` first


@dataclass(frozen=True)
class EncodedOutput:
    name: str  # an effect name, or "mask"
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True)
class ModelCall:
    """One engine call: how many images, at which input side, how long it took."""

    images: int
    input_size: int
    seconds: float


@dataclass
class JobOutcome:
    job_id: str
    outputs: list[EncodedOutput] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 0  # images that went through the model together with this one
    model_input: int = 0  # the model input side it ran at (0: it never reached the model)

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class BatchResult:
    outcomes: list[JobOutcome]  # in the order of the jobs
    model_calls: list[ModelCall]  # one, or more when images of other input sizes or OOM split it
    # Stage → (start, end) in epoch seconds: decode, wait_device, inference, effects, encode.
    spans: dict[str, tuple[float, float]]


OnPreview = Callable[[str, list[EncodedOutput]], None]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class _Item:
    """One decoded job on its way through the model, the effects and the encoders."""

    def __init__(
        self,
        job: JobInput,
        tensor: torch.Tensor,
        model_tensor: torch.Tensor,
        icc_profile: bytes | None,
        model_input: int,
    ) -> None:
        self.job = job
        self.tensor = tensor  # 3×H×W uint8 at the output size, on the host or the device
        self.model_tensor = model_tensor  # what the model resizes from (the same, or larger)
        self.icc_profile = icc_profile
        self.model_input = model_input
        self.mask: torch.Tensor | None = None  # 1×H×W float on the device
        # name → (future or finished bytes, codec), in the order the outputs are listed.
        self.pending: dict[str, tuple[Future[bytes] | bytes, str]] = {}
        self.previews: dict[str, Future[bytes]] = {}
        self.preview_size = (0, 0)
        self.encode_started = 0.0
        self.device_encode = 0.0

    @classmethod
    def decoded(cls, job: JobInput, image: DecodedImage, model_input: int) -> _Item:
        tensor = torch.from_numpy(image.rgb).permute(2, 0, 1)
        source = image.model_rgb
        model = tensor if source is None else torch.from_numpy(source).permute(2, 0, 1)
        return cls(job, tensor, model, image.icc_profile, model_input)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.tensor.shape[1]), int(self.tensor.shape[2])


class Pipeline:
    def __init__(
        self,
        segmenter: Segmenter,
        pool: Executor,
        device_jpeg: DeviceJpegEncoder | None | Literal["auto"] = "auto",
        device_decoder: DeviceJpegDecoder | None | Literal["auto"] = "auto",
    ) -> None:
        self.segmenter = segmenter
        self.pool = pool
        self.device_jpeg = (
            find_device_jpeg_encoder(segmenter.device) if device_jpeg == "auto" else device_jpeg
        )
        self.device_decoder = (
            device_jpeg_decoder(segmenter.device) if device_decoder == "auto" else device_decoder
        )
        self._device = threading.Lock()  # one batch on the device at a time

    def run(self, jobs: Sequence[JobInput]) -> list[JobOutcome]:
        return self.process(jobs).outcomes

    def process(self, jobs: Sequence[JobInput], on_preview: OnPreview | None = None) -> BatchResult:
        """Run the batch; safe to call from several threads at once (batches then overlap).

        ``on_preview(job_id, outputs)`` gets the previews of each job that asked for them, as
        soon as they are encoded and before its full outputs are."""
        began = time.perf_counter()
        outcomes = {job.job_id: JobOutcome(job.job_id) for job in jobs}
        spans: dict[str, tuple[float, float]] = {}
        calls: list[ModelCall] = []
        with _span(spans, "decode"):
            items = self._decode(jobs, outcomes)
        if items:
            with _span(spans, "wait_device"):
                self._device.acquire()
            try:
                with _span(spans, "inference"):
                    items = self._segment(items, outcomes, calls)
                with _span(spans, "effects"):
                    items = self._render_all(items, outcomes)
            finally:
                self._device.release()
            with _span(spans, "encode"):
                for item in items:
                    if item.previews and on_preview is not None:
                        self._publish_preview(item, outcomes[item.job.job_id], began, on_preview)
                for item in items:
                    self._collect(item, outcomes[item.job.job_id])
        return BatchResult([outcomes[job.job_id] for job in jobs], calls, spans)

    def _decode(self, jobs: Sequence[JobInput], outcomes: dict[str, JobOutcome]) -> list[_Item]:
        """Decoded jobs in order; a job that cannot be decoded gets its ``invalid_image``."""
        on_device = self._decode_on_device(jobs, outcomes) if self.device_decoder else {}
        full = self.segmenter.config.input_size

        def one(job: JobInput) -> tuple[JobInput, DecodedImage | InvalidImage, float]:
            start = time.perf_counter()
            try:
                image: DecodedImage | InvalidImage = decode(
                    job.data, job.max_size, job.model_input or full
                )
            except InvalidImage as exc:
                image = exc
            return job, image, time.perf_counter() - start

        decoded = {}
        for job, image, seconds in self.pool.map(
            one, [j for j in jobs if j.job_id not in on_device]
        ):
            outcomes[job.job_id].timings["decode_ms"] = _ms(seconds)
            if isinstance(image, InvalidImage):
                outcomes[job.job_id].error_code = "invalid_image"
                outcomes[job.job_id].error_message = str(image)
            else:
                decoded[job.job_id] = _Item.decoded(job, image, job.model_input or full)
        items = {**on_device, **decoded}
        return [items[job.job_id] for job in jobs if job.job_id in items]

    def _decode_on_device(
        self, jobs: Sequence[JobInput], outcomes: dict[str, JobOutcome]
    ) -> dict[str, _Item]:
        """The batch's JPEGs decoded on the device in one call and resized there; {} when that
        fails (a JPEG nvJPEG cannot read): Pillow then decodes them, so a bad one fails alone."""
        assert self.device_decoder is not None
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
            images = self.device_decoder([job.data for job, _ in chosen])
        except Exception:
            log.warning("decoding on the device failed; Pillow decodes the batch", exc_info=True)
            return {}
        seconds = time.perf_counter() - start
        items = {}
        for (job, icc), image in zip(chosen, images, strict=True):
            model_input = job.model_input or self.segmenter.config.input_size
            height, width = int(image.shape[1]), int(image.shape[2])
            out_w, out_h = fit_within(width, height, job.max_size)
            out = image if (out_w, out_h) == (width, height) else _resize(image, (out_h, out_w))
            model = image if min(out_h, out_w) < model_input else out
            items[job.job_id] = _Item(job, out, model, icc, model_input)
            outcomes[job.job_id].timings["decode_ms"] = _ms(seconds)
        return items

    def _segment(
        self, items: list[_Item], outcomes: dict[str, JobOutcome], calls: list[ModelCall]
    ) -> list[_Item]:
        """A mask for each item, one model call per input size; returns the items that got one."""
        by_size: dict[int, list[_Item]] = defaultdict(list)
        for item in items:
            by_size[item.model_input].append(item)
        return [
            done
            for size, group in by_size.items()
            for done in self._predict(group, size, outcomes, calls)
        ]

    def _predict(
        self,
        items: list[_Item],
        size: int,
        outcomes: dict[str, JobOutcome],
        calls: list[ModelCall],
    ) -> list[_Item]:
        start = time.perf_counter()
        try:
            masks = self.segmenter.predict(
                [item.model_tensor for item in items], [item.size for item in items], size
            )
        except torch.OutOfMemoryError as exc:
            return [
                done
                for part in self._halves_after_oom(items, outcomes, exc)
                for done in self._predict(part, size, outcomes, calls)
            ]
        seconds = time.perf_counter() - start
        calls.append(ModelCall(len(items), size, seconds))
        for item, mask in zip(items, masks, strict=True):
            item.mask = mask
            outcome = outcomes[item.job.job_id]
            outcome.timings["inference_ms"] = _ms(seconds)
            outcome.batch_size = len(items)
            outcome.model_input = size
        return items

    def _halves_after_oom(
        self, items: list[_Item], outcomes: dict[str, JobOutcome], exc: torch.OutOfMemoryError
    ) -> list[list[_Item]]:
        """After running out of device memory: the group's two halves to retry, or, for a
        lone image, none (its job fails with ``resources_exhausted``)."""
        _free_device_memory(self.segmenter.device)
        if len(items) == 1:
            _fail(outcomes[items[0].job.job_id], exc, "resources_exhausted")
            return []
        half = len(items) // 2
        return [items[:half], items[half:]]

    def _render_all(self, items: list[_Item], outcomes: dict[str, JobOutcome]) -> list[_Item]:
        """The effects, one fused pass per group of same-size images; returns the items whose
        encodes were submitted."""
        groups: dict[tuple[int, int], list[_Item]] = defaultdict(list)
        for item in items:
            groups[item.size].append(item)
        return [done for group in groups.values() for done in self._render_split(group, outcomes)]

    def _render_split(self, items: list[_Item], outcomes: dict[str, JobOutcome]) -> list[_Item]:
        """Out of device memory, the group is split in halves; after any other failure it is
        retried image by image, so the failure stays with the job that caused it."""
        try:
            self._render(items, outcomes)
            return items
        except torch.OutOfMemoryError as exc:
            parts = self._halves_after_oom(items, outcomes, exc)
        except Exception as exc:
            if len(items) == 1:
                _fail(outcomes[items[0].job.job_id], exc)
                return []
            parts = [[item] for item in items]
        for item in items:
            item.pending.clear()
            item.previews.clear()
        return [done for part in parts for done in self._render_split(part, outcomes)]

    def _render(self, items: list[_Item], outcomes: dict[str, JobOutcome]) -> None:
        """One fused effects pass over same-size images, then their encodes submitted
        (previews first)."""
        start = time.perf_counter()
        device = self.segmenter.device
        wanted = {name for item in items for name in item.job.effects}
        names = [name for name in EFFECT_NAMES if name in wanted]
        image = torch.stack([item.tensor for item in items]).to(device).float().div_(255)
        masks = [item.mask for item in items if item.mask is not None]
        rendered = render(image, torch.stack(masks).to(device), names)
        if any(item.job.preview for item in items):
            self._submit_previews(items, rendered)
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

    def _submit_previews(self, items: list[_Item], rendered: Rendered) -> None:
        """Downscale each effect on the device (premultiplied, so no halo comes in from
        under the alpha) and queue the previews' encodes ahead of the full outputs'."""
        height, width = items[0].size
        small_w, small_h = fit_within(width, height, PREVIEW_SIDE)
        alpha = rendered.alpha
        small_alpha = F.interpolate(alpha, size=(small_h, small_w), mode="area")
        alpha_host = _to_uint8(small_alpha)[:, 0].cpu().numpy()
        for name, colour in rendered.colours.items():
            small = F.interpolate(colour * alpha, size=(small_h, small_w), mode="area")
            straight = _to_uint8(small / small_alpha.clamp_min(1e-6))
            host = straight.permute(0, 2, 3, 1).cpu().numpy()
            for index, item in enumerate(items):
                if item.job.preview and name in item.job.effects:
                    item.previews[name] = self.pool.submit(
                        encode_image,
                        host[index],
                        alpha_host[index],
                        PREVIEW_CODEC,
                        item.icc_profile,
                    )
        for item in items:
            item.preview_size = (small_w, small_h)

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
            icc = items[index].icc_profile
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
                encode_effect, name, colours[name], alpha, job.format, item.icc_profile
            )
            item.pending[name] = (future, codec)
        item.pending["mask"] = (self.pool.submit(encode_mask, alpha), MASK_CODEC)

    def _publish_preview(
        self, item: _Item, outcome: JobOutcome, began: float, on_preview: OnPreview
    ) -> None:
        """Hand the previews over; a preview that fails is logged and the job goes on."""
        content_type, extension = CODECS[PREVIEW_CODEC]
        width, height = item.preview_size
        try:
            outputs = [
                EncodedOutput(name, future.result(), content_type, extension, width, height)
                for name, future in item.previews.items()
            ]
            outcome.timings["preview_ms"] = _ms(time.perf_counter() - began)
            on_preview(item.job.job_id, outputs)
        except Exception:
            log.exception("the preview of job %s failed", item.job.job_id)

    def _collect(self, item: _Item, outcome: JobOutcome) -> None:
        height, width = item.size
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


@contextmanager
def _span(spans: dict[str, tuple[float, float]], stage: str) -> Iterator[None]:
    start = time.time()
    try:
        yield
    finally:
        spans[stage] = (round(start, 3), round(time.time(), 3))


def _fail(outcome: JobOutcome, exc: Exception, code: str = "processing_failed") -> None:
    outcome.error_code = code
    outcome.error_message = f"{type(exc).__name__}: {exc}"


def _free_device_memory(device: torch.device) -> None:
    """After an out-of-memory error: hand the allocator's cached blocks back before retrying."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 3×H×W uint8 image resized to ``size`` (H, W) where it is, antialiased."""
    resized = F.interpolate(
        image.unsqueeze(0).float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return resized.squeeze(0).round_().clamp_(0, 255).to(torch.uint8)


def _to_uint8(t: torch.Tensor) -> torch.Tensor:
    """B×C×H×W float in [0, 1] → uint8, on its device."""
    return t.clamp(0, 1).mul_(255).round_().to(torch.uint8)
