"""One micro-batch through the stages, with the device lock around the device stage only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Literal

import torch

from workers.device_decode import DeviceJpegDecoder, device_jpeg_decoder
from workers.outputs import DeviceJpegEncoder, encode_effect
from workers.outputs import device_jpeg_encoder as find_device_jpeg_encoder
from workers.pipeline.decode import decode_batch
from workers.pipeline.device import Masked, OnDevice, render_groups, segment
from workers.pipeline.host import EncodeEffect, Encoding, finish_on_host
from workers.pipeline.jobs import BatchResult, Failure, JobInput, JobOutcome, OnPreview
from workers.pipeline.outcomes import assemble, collect, publish_previews
from workers.pipeline.timing import DeviceClock, ms, span
from workers.predictor import Segmenter


class Pipeline:
    """Runs micro-batches of jobs; several threads may call ``process`` at once.

    ``device_jpeg`` and ``device_decoder``: the device's JPEG encoder and decoder ("auto":
    nvJPEG on CUDA where torchvision imports, none elsewhere). ``encode_effect`` encodes one
    effect's output on the host (``workers.outputs.encode_effect``)."""

    def __init__(
        self,
        segmenter: Segmenter,
        pool: Executor,
        device_jpeg: DeviceJpegEncoder | None | Literal["auto"] = "auto",
        device_decoder: DeviceJpegDecoder | None | Literal["auto"] = "auto",
        encode_effect: EncodeEffect = encode_effect,
    ) -> None:
        self.segmenter = segmenter
        self.pool = pool
        device = segmenter.device
        self.device_jpeg = (
            find_device_jpeg_encoder(device) if device_jpeg == "auto" else device_jpeg
        )
        self.device_decoder = (
            device_jpeg_decoder(device) if device_decoder == "auto" else device_decoder
        )
        self.encode_effect = encode_effect
        self._device = threading.Lock()  # one batch's device work at a time
        # Device → host copies run beside the next batch's model (CUDA only).
        self._copies = torch.cuda.Stream(device) if device.type == "cuda" else None

    def switch_segmenter(
        self, make: Callable[[], Segmenter], hold_device: bool = False
    ) -> Segmenter:
        """Replace the segmenter between batches, never during one (the device lock); returns
        the new one. ``make`` builds and warms it outside the lock, so batches keep running
        meanwhile, unless ``hold_device`` (a CUDA graph capture must run alone)."""
        segmenter = None if hold_device else make()
        with self._device:
            segmenter = segmenter or make()
            old = self.segmenter
            if (segmenter.device, segmenter.config) != (old.device, old.config):
                raise ValueError("a switch changes the engine only, not the model or the device")
            self.segmenter = segmenter
        return segmenter

    def run(self, jobs: Sequence[JobInput]) -> list[JobOutcome]:
        return self.process(jobs).outcomes

    def process(self, jobs: Sequence[JobInput], on_preview: OnPreview | None = None) -> BatchResult:
        """Run the batch: decode → device stage (under the lock) → host stage.

        ``on_preview(job_id, outputs)`` gets the previews of each job that asked for them, as
        soon as they are encoded and before its full outputs are."""
        began = time.perf_counter()
        spans: dict[str, tuple[float, float]] = {}
        with torch.inference_mode():
            with span(spans, "decode"):
                decoded, failures, decode_ms = decode_batch(
                    jobs, self.pool, self.segmenter.config.input_size, self.device_decoder
                )
            masked: list[Masked] = []
            groups: list[OnDevice] = []
            lock_held = device_ms = 0.0
            if decoded:
                clock = DeviceClock(self.segmenter.device)
                with span(spans, "wait_device"):
                    self._device.acquire()
                held = time.perf_counter()
                segmenter = self.segmenter  # read under the lock: one engine per batch
                try:
                    clock.start()
                    with span(spans, "inference"):
                        masked, failed = segment(segmenter, decoded)
                    with span(spans, "effects"):
                        groups, failed_render = render_groups(
                            masked, segmenter.device, self.device_jpeg, self._copies
                        )
                    clock.stop()
                finally:
                    self._device.release()
                    lock_held = ms(time.perf_counter() - held)
                failures = {**failures, **failed, **failed_render}
                device_ms = clock.elapsed_ms()
            with span(spans, "host"):
                outcomes = self._finish(
                    jobs, decode_ms, masked, failures, groups, began, on_preview
                )
        calls = list({id(m.call): m.call for m in masked}.values())
        return BatchResult(outcomes, calls, spans, lock_held, device_ms)

    def _finish(
        self,
        jobs: Sequence[JobInput],
        decode_ms: dict[str, float],
        masked: list[Masked],
        failures: dict[str, Failure],
        groups: list[OnDevice],
        began: float,
        on_preview: OnPreview | None,
    ) -> list[JobOutcome]:
        """The host stage: encodes queued, previews handed over, outputs collected."""
        encodings: dict[str, Encoding] = {
            e.item.job.job_id: e
            for group in groups
            for e in finish_on_host(group, self.pool, self.encode_effect)
        }
        preview_ms = {}
        for job_id, encoding in encodings.items():
            if encoding.previews and on_preview is not None:
                elapsed = publish_previews(encoding, began, on_preview)
                if elapsed is not None:
                    preview_ms[job_id] = elapsed
        finished = {job_id: collect(encoding) for job_id, encoding in encodings.items()}
        return assemble(jobs, decode_ms, masked, failures, finished, encodings, preview_ms)
