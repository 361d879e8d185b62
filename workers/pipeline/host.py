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
from workers.finishing import Box, subject_box
from workers.imageio import encode_image, encode_mask
from workers.outputs import MASK_CODEC, encode_finished, finished_codec
from workers.pipeline.decode import Decoded
from workers.pipeline.device import Masked, OnDevice
from workers.pipeline.jobs import JobInput
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
    size: tuple[int, int]  # (height, width) of its outputs: the photo's, or its canvas
    foreground: Future[Box]  # the subject's box in its outputs, measured on the mask

    @property
    def item(self) -> Decoded:
        return self.masked.item


Arrays = dict[str, np.ndarray]
PerJob = list[dict[str, Future[bytes] | bytes]]  # per job of the group: name → its bytes
Previews = list[dict[str, Future[bytes]]]


def finish_on_host(group: OnDevice, pool: Executor, encode_effect: EncodeEffect) -> list[Encoding]:
    """Every job of the group with its encodes (and previews) queued on ``pool``."""
    arrays = group.copies.wait()
    started = time.perf_counter()
    previews = _queue_previews(group, arrays, pool)
    steps = _queue_host_steps(group, arrays, pool)
    outputs = _queue_encodes(group, arrays, pool, encode_effect)
    masks = [_mask(group, arrays, index) for index in range(len(group.items))]
    boxes = [pool.submit(subject_box, mask) for mask in masks]
    alpha = arrays["alpha"]
    for (index, name), step in steps.items():  # as each host step ends: its preview, its encode
        item = group.items[index].item
        try:
            colour = step.result()
        except Exception as exc:  # fails this job when its outputs are collected
            failed: Future[bytes] = Future()
            failed.set_exception(exc)
            outputs[index][name] = failed
            continue
        if item.job.preview:
            small = shrink_on_host(colour, alpha[index], group.preview_size)
            small_alpha = arrays["preview/alpha"][index]
            previews[index][name] = pool.submit(
                encode_image, small, small_alpha, PREVIEW_CODEC, item.icc_profile
            )
        outputs[index][name] = pool.submit(
            encode_effect, name, colour, alpha[index], item.job.format, item.icc_profile
        )
    return [
        Encoding(
            masked,
            {
                name: (outputs[index][name], _codec(name, masked.item.job, index, group))
                for name in (*masked.item.job.effects, "mask")
            },
            {n: previews[index][n] for n in masked.item.job.effects if n in previews[index]},
            _preview_size(group, arrays, index),
            group.effects_ms,
            group.device_encode_ms if any(i == index for i, _ in group.device_jpegs) else 0.0,
            started,
            (int(masks[index].shape[0]), int(masks[index].shape[1])),
            boxes[index],
        )
        for index, masked in enumerate(group.items)
        if index not in group.failed
    ]


def _mask(group: OnDevice, arrays: Arrays, index: int) -> np.ndarray:
    """The job's mask output: its own canvas's, or the group's at the photo's size."""
    own = arrays.get(f"job/{index}/mask")
    return arrays["alpha"][index] if own is None else own


def _queue_previews(group: OnDevice, arrays: Arrays, pool: Executor) -> Previews:
    """The previews shrunk on the device, encoded first: they are wanted first."""
    previews: Previews = [{} for _ in group.items]
    for index, masked in enumerate(group.items):
        job, icc = masked.item.job, masked.item.icc_profile
        for name in job.effects if job.preview and index not in group.failed else ():
            if index in group.finished:  # its own canvas, finished
                small = arrays[f"job/{index}/preview/{name}"]
                small_alpha = arrays[f"job/{index}/preview/alpha"]
                previews[index][name] = pool.submit(
                    encode_image, small, small_alpha, PREVIEW_CODEC, icc
                )
            elif name not in group.deferred:
                small, small_alpha = arrays[f"preview/{name}"], arrays["preview/alpha"]
                previews[index][name] = pool.submit(
                    encode_image, small[index], small_alpha[index], PREVIEW_CODEC, icc
                )
    return previews


def _preview_size(group: OnDevice, arrays: Arrays, index: int) -> tuple[int, int]:
    """(width, height) of the job's previews: the group's, or its own canvas's."""
    own = arrays.get(f"job/{index}/preview/alpha")
    return group.preview_size if own is None else (int(own.shape[1]), int(own.shape[0]))


def _queue_host_steps(
    group: OnDevice, arrays: Arrays, pool: Executor
) -> dict[tuple[int, str], Future[np.ndarray]]:
    """Effects' last steps the device left (dithering without its kernel), one per image."""
    return {
        (index, name): pool.submit(_host_step(name), arrays[f"deferred/{name}"][index])
        for index, masked in enumerate(group.items)
        for name in masked.item.job.effects
        if name in group.deferred and index not in group.finished and index not in group.failed
    }


def _queue_encodes(
    group: OnDevice, arrays: Arrays, pool: Executor, encode_effect: EncodeEffect
) -> PerJob:
    """The encodes of effects finished on the device (or their device JPEGs), and the mask."""
    alpha = arrays["alpha"]
    outputs: PerJob = [{} for _ in group.items]
    for index, masked in enumerate(group.items):
        job, icc = masked.item.job, masked.item.icc_profile
        if index in group.failed:
            continue
        if index in group.finished:
            outputs[index] = _queue_finished(index, job, icc, arrays, pool)
            continue
        for name in job.effects:
            if (index, name) in group.device_jpegs:
                outputs[index][name] = group.device_jpegs[index, name]
            elif name not in group.deferred:
                colour = arrays[f"colour/{name}"][index]
                outputs[index][name] = pool.submit(
                    encode_effect, name, colour, alpha[index], job.format, icc
                )
        outputs[index]["mask"] = pool.submit(encode_mask, alpha[index])
    return outputs


def _queue_finished(
    index: int, job: JobInput, icc: bytes | None, arrays: Arrays, pool: Executor
) -> dict[str, Future[bytes] | bytes]:
    """A job finished on its own canvas: each effect as composited, and its mask."""
    alpha, composited = arrays[f"job/{index}/alpha"], job.finishing.composites
    queued: dict[str, Future[bytes] | bytes] = {
        name: pool.submit(
            encode_finished,
            name,
            arrays[f"job/{index}/colour/{name}"],
            alpha,
            job.format,
            icc,
            composited,
        )
        for name in job.effects
    }
    queued["mask"] = pool.submit(encode_mask, arrays[f"job/{index}/mask"])
    return queued


def _host_step(name: str) -> Callable[[np.ndarray], np.ndarray]:
    step = EFFECTS[name].host_step
    assert step is not None, f"{name} has no host step"
    return step.on_host


def _codec(name: str, job: JobInput, index: int, group: OnDevice) -> str:
    if name == "mask":
        return MASK_CODEC
    composited = index in group.finished and job.finishing.composites
    return finished_codec(EFFECTS[name], job.format, composited)
