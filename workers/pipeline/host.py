"""The host stage, after the device lock is released: wait for a group's copies, then hand
every remaining piece of work to the thread pool — previews first, then the effects' host
steps (dithering's error diffusion where the device has no kernel for it), then the encodes.

Nothing here touches the device, so while it runs the next batch is on the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np

from workers.effects import EFFECTS
from workers.imageio import encode_image, encode_mask
from workers.outputs import MASK_CODEC, codec_for
from workers.pipeline.decode import Decoded
from workers.pipeline.device import Masked, OnDevice
from workers.pipeline.previews import PREVIEW_CODEC, shrink_on_host

# (effect name, H×W×C uint8 colour, H×W uint8 alpha, format, ICC profile) → file bytes
EncodeEffect = Callable[[str, np.ndarray, np.ndarray, str, "bytes | None"], bytes]


@dataclass(frozen=True)
class Encoding:
    """One job's outputs on their way: ``outputs`` maps each name (its effects in order, then
    ``mask``) to the bytes, or the future of the bytes, and the codec."""

    masked: Masked
    outputs: dict[str, tuple[Future[bytes] | bytes, str]]
    previews: dict[str, Future[bytes]]
    preview_size: tuple[int, int]
    effects_ms: float
    device_encode_ms: float  # this job's part of the device encodes (0 when it had none)
    started: float  # perf_counter when its encodes were handed to the pool

    @property
    def item(self) -> Decoded:
        return self.masked.item


def finish_on_host(group: OnDevice, pool: Executor, encode_effect: EncodeEffect) -> list[Encoding]:
    """Every job of the group with its encodes (and previews) queued on ``pool``."""
    arrays = group.copies.wait()
    started = time.perf_counter()
    alpha = arrays["alpha"]
    jobs = [m.item.job for m in group.items]
    previews: list[dict[str, Future[bytes]]] = [{} for _ in jobs]
    outputs: list[dict[str, Future[bytes] | bytes]] = [{} for _ in jobs]

    def preview(index: int, name: str, colour: np.ndarray, small_alpha: np.ndarray) -> None:
        icc = group.items[index].item.icc_profile
        previews[index][name] = pool.submit(encode_image, colour, small_alpha, PREVIEW_CODEC, icc)

    for index, job in enumerate(jobs):
        for name in job.effects if job.preview else ():
            if name not in group.deferred:
                small = arrays[f"preview/{name}"][index]
                preview(index, name, small, arrays["preview/alpha"][index])
    steps = {
        (index, name): pool.submit(_host_step(name), arrays[f"deferred/{name}"][index])
        for index, job in enumerate(jobs)
        for name in job.effects
        if name in group.deferred
    }
    for index, job in enumerate(jobs):
        icc = group.items[index].item.icc_profile
        for name in job.effects:
            if (index, name) in group.device_jpegs:
                outputs[index][name] = group.device_jpegs[index, name]
            elif name not in group.deferred:
                colour = arrays[f"colour/{name}"][index]
                outputs[index][name] = pool.submit(
                    encode_effect, name, colour, alpha[index], job.format, icc
                )
        outputs[index]["mask"] = pool.submit(encode_mask, alpha[index])
    for (index, name), step in steps.items():
        job, icc = jobs[index], group.items[index].item.icc_profile
        try:
            colour = step.result()
        except Exception as exc:  # fails this job when its outputs are collected
            failed: Future[bytes] = Future()
            failed.set_exception(exc)
            outputs[index][name] = failed
            continue
        if job.preview:
            small = shrink_on_host(colour, alpha[index], group.preview_size)
            preview(index, name, small, arrays["preview/alpha"][index])
        outputs[index][name] = pool.submit(
            encode_effect, name, colour, alpha[index], job.format, icc
        )
    return [
        Encoding(
            masked,
            {
                name: (outputs[index][name], _codec(name, job.format))
                for name in (*job.effects, "mask")
            },
            {name: previews[index][name] for name in job.effects if name in previews[index]},
            group.preview_size,
            group.effects_ms,
            group.device_encode_ms if any(i == index for i, _ in group.device_jpegs) else 0.0,
            started,
        )
        for index, (masked, job) in enumerate(zip(group.items, jobs, strict=True))
    ]


def _host_step(name: str) -> Callable[[np.ndarray], np.ndarray]:
    step = EFFECTS[name].host_step
    assert step is not None, f"{name} has no host step"
    return step.on_host


def _codec(name: str, fmt: str) -> str:
    return MASK_CODEC if name == "mask" else codec_for(EFFECTS[name], fmt)
