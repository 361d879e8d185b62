"""The device stage, the only one that holds the device lock: the model call, the effects
pass, device-side encodes, and the start of the copies back to the host.

Images of the same model input go through the model in one call; images of the same size go
through the effects in one fused pass. Running out of device memory (``torch.OutOfMemoryError``)
splits a call or a pass in halves down to one image, whose job then fails with
``resources_exhausted``; any other failure of a pass is retried image by image, so it stays
with the job that caused it. Nothing here waits for the host: effects whose last step only
the host can do (see ``workers.effects.HostStep``) stop before it, and the copies to the host
are only started (``workers.pipeline.transfer``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from contract.effects import EFFECT_NAMES
from workers.effects import EFFECTS, Rendered, render
from workers.finishing import Finished, NoSubject, finish, refine_edges
from workers.imageio import JPEG_QUALITY, add_jpeg_icc_profile, fit_within
from workers.outputs import DeviceJpegEncoder, codec_for
from workers.pipeline.decode import Decoded
from workers.pipeline.jobs import Failure, JobInput, ModelCall
from workers.pipeline.previews import PREVIEW_SIDE, shrink, to_uint8
from workers.pipeline.timing import ms
from workers.pipeline.transfer import HostCopy
from workers.predictor import Segmenter

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Masked:
    """A decoded job and its mask (1×H×W float on the device) from one model call."""

    item: Decoded
    mask: torch.Tensor
    call: ModelCall


@dataclass(frozen=True)
class OnDevice:
    """A same-size group after its effects pass, its copies to the host under way.

    ``copies`` holds ``alpha`` (B×H×W uint8), ``colour/<name>`` for effects finished on the
    device and needed on the host, ``deferred/<name>`` for the input of an effect's host step
    (both B×H×W×C uint8), and for previews ``preview/alpha`` and ``preview/<name>``. A job
    with a background or a crop (``finished``) has its own canvas: ``job/<i>/alpha``,
    ``job/<i>/mask`` (h×w uint8) and ``job/<i>/colour/<name>`` (h×w×C uint8)."""

    items: tuple[Masked, ...]
    copies: HostCopy
    deferred: tuple[str, ...]  # effects whose host step is left to do
    device_jpegs: dict[tuple[int, str], bytes]  # (index in the group, effect) → JPEG
    effects_ms: float  # the pass and the copies' start, without the device encodes
    device_encode_ms: float
    preview_size: tuple[int, int]  # (width, height); (0, 0) without previews
    finished: tuple[int, ...] = ()  # indices of the jobs finished on a canvas of their own
    failed: dict[int, Failure] = field(default_factory=dict)  # index → why (no subject)


def segment(
    segmenter: Segmenter, items: Sequence[Decoded]
) -> tuple[list[Masked], dict[str, Failure]]:
    """A mask for each item, one model call per input size (in order of first appearance)."""
    by_size: dict[int, list[Decoded]] = defaultdict(list)
    for item in items:
        by_size[item.model_input].append(item)
    masked: list[Masked] = []
    failures: dict[str, Failure] = {}
    for size, group in by_size.items():

        def predict(part: list[Decoded], size: int = size) -> list[Masked]:
            start = time.perf_counter()
            masks = segmenter.predict(
                [item.model_image for item in part], [item.size for item in part], size
            )
            call = ModelCall(len(part), size, time.perf_counter() - start, segmenter.engine.name)
            return [Masked(item, mask, call) for item, mask in zip(part, masks, strict=True)]

        done, failed = split_on_failure(group, predict, segmenter.device, retry_alone=False)
        masked += done
        failures.update(failed)
    return masked, failures


def render_groups(
    masked: Sequence[Masked],
    device: torch.device,
    device_jpeg: DeviceJpegEncoder | None,
    copy_stream: torch.cuda.Stream | None,
) -> tuple[list[OnDevice], dict[str, Failure]]:
    """The effects, one fused pass per group of same-size images."""
    groups: dict[tuple[int, int], list[Masked]] = defaultdict(list)
    for m in masked:
        groups[m.item.size].append(m)
    rendered: list[OnDevice] = []
    failures: dict[str, Failure] = {}
    for group in groups.values():

        def one_pass(part: list[Masked]) -> list[OnDevice]:
            return [_render(part, device, device_jpeg, copy_stream)]

        done, failed = split_on_failure(group, one_pass, device, retry_alone=True)
        rendered += done
        failures.update(failed)
        for on_device in done:  # jobs of a pass that failed on their own (no subject)
            for index, failure in on_device.failed.items():
                failures[on_device.items[index].item.job.job_id] = failure
    return rendered, failures


def split_on_failure(
    items: list[T],
    run: Callable[[list[T]], list[R]],
    device: torch.device,
    retry_alone: bool,
) -> tuple[list[R], dict[str, Failure]]:
    """``run(items)``; out of device memory, each half in turn, down to one item whose job
    fails with ``resources_exhausted``. With ``retry_alone`` any other failure retries the
    items one by one (a lone item's job fails with ``processing_failed``); without, it
    propagates."""
    try:
        return run(items), {}
    except torch.OutOfMemoryError as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the allocator's cached blocks back before retrying
        if len(items) == 1:
            return [], {_job_id(items[0]): Failure.of(exc, "resources_exhausted")}
        parts = [items[: len(items) // 2], items[len(items) // 2 :]]
    except Exception as exc:
        if not retry_alone:
            raise
        if len(items) == 1:
            return [], {_job_id(items[0]): Failure.of(exc)}
        parts = [[item] for item in items]
    done: list[R] = []
    failures: dict[str, Failure] = {}
    for part in parts:
        part_done, part_failed = split_on_failure(part, run, device, retry_alone)
        done += part_done
        failures.update(part_failed)
    return done, failures


def _job_id(item: object) -> str:
    decoded = item.item if isinstance(item, Masked) else item
    assert isinstance(decoded, Decoded)
    return decoded.job.job_id


def _render(
    items: list[Masked],
    device: torch.device,
    device_jpeg: DeviceJpegEncoder | None,
    copy_stream: torch.cuda.Stream | None,
) -> OnDevice:
    start = time.perf_counter()
    jobs = [m.item.job for m in items]
    wanted = {name for job in jobs for name in job.effects}
    unknown = sorted(wanted - EFFECTS.keys())
    if unknown:
        raise KeyError(f"unknown effects {unknown}; known: {', '.join(EFFECTS)}")
    names = [name for name in EFFECT_NAMES if name in wanted]
    image = torch.stack([m.item.image for m in items]).to(device).float().div_(255)
    masks = _refined(image, torch.stack([m.mask for m in items]).to(device), jobs)
    rendered = render(image, masks, names, True)
    finished, failed = _finish_jobs(items, image, rendered, device)
    colours = {name: to_uint8(colour) for name, colour in rendered.colours.items()}
    jpegs, encode_seconds = _encode_on_device(items, colours, device_jpeg, set(finished))
    copies = {"alpha": to_uint8(rendered.alpha)[:, 0]}
    for name, colour in colours.items():
        if any(
            name in job.effects and (i, name) not in jpegs and i not in finished
            for i, job in enumerate(jobs)
        ):
            copies[f"colour/{name}"] = colour.permute(0, 2, 3, 1)
    for index, done in finished.items():
        copies[f"job/{index}/alpha"] = to_uint8(done.alpha)[0]
        copies[f"job/{index}/mask"] = to_uint8(done.mask)[0]
        for name, colour in done.colours.items():
            copies[f"job/{index}/colour/{name}"] = to_uint8(colour).permute(1, 2, 0)
        if jobs[index].preview:  # its previews show it finished, at its canvas's shape
            height, width = done.alpha.shape[-2:]
            size = fit_within(width, height, PREVIEW_SIDE)
            batched = {name: colour[None] for name, colour in done.colours.items()}
            alpha, small = shrink(done.alpha[None], batched, size)
            copies[f"job/{index}/preview/alpha"] = alpha[0]
            copies.update({f"job/{index}/preview/{n}": c[0] for n, c in small.items()})
    for name, before in rendered.deferred.items():
        copies[f"deferred/{name}"] = before.permute(0, 2, 3, 1)
    preview_size = (0, 0)
    if any(job.preview for job in jobs):
        height, width = items[0].item.size
        preview_size = fit_within(width, height, PREVIEW_SIDE)
        alpha, small = shrink(rendered.alpha, rendered.colours, preview_size)
        copies["preview/alpha"] = alpha
        copies.update({f"preview/{name}": colour for name, colour in small.items()})
    transfer = HostCopy.start(copies, copy_stream)
    seconds = time.perf_counter() - start - encode_seconds
    deferred = tuple(rendered.deferred)
    return OnDevice(
        tuple(items),
        transfer,
        deferred,
        jpegs,
        ms(seconds),
        ms(encode_seconds),
        preview_size,
        tuple(sorted(finished)),
        failed,
    )


def _refined(image: torch.Tensor, masks: torch.Tensor, jobs: Sequence[JobInput]) -> torch.Tensor:
    """The masks, those of jobs that asked for ``refine=edges`` refined against the photo."""
    wanted = [i for i, job in enumerate(jobs) if job.finishing.refine == "edges"]
    if not wanted:
        return masks
    masks = masks.clone()
    masks[wanted] = refine_edges(image[wanted], masks[wanted].to(image.dtype)).to(masks.dtype)
    return masks


def _finish_jobs(
    items: Sequence[Masked], image: torch.Tensor, rendered: Rendered, device: torch.device
) -> tuple[dict[int, Finished], dict[int, Failure]]:
    """Crop, placement and background for the jobs that asked for them, one by one (each
    has a canvas of its own); an effect whose host step was deferred is finished here for
    them, since the background goes on after it."""
    finished: dict[int, Finished] = {}
    failed: dict[int, Failure] = {}
    for index, masked in enumerate(items):
        job = masked.item.job
        if job.finishing.layout.is_identity and not job.finishing.composites:
            continue
        colours = {}
        for name in job.effects:
            if name in rendered.colours:
                colours[name] = rendered.colours[name][index]
            else:  # deferred: its last step on the device's own path
                step = EFFECTS[name].host_step
                assert step is not None
                colours[name] = step.on_device(rendered.deferred[name][index : index + 1])[0]
        smooth = {name: EFFECTS[name].kind == "tone" for name in colours}
        background = masked.item.background
        try:
            finished[index] = finish(
                image[index],
                rendered.alpha[index],
                colours,
                smooth,
                job.finishing,
                None if background is None else background.to(device),
            )
        except NoSubject as exc:
            failed[index] = Failure(exc.code, str(exc))
    return finished, failed


def _encode_on_device(
    items: Sequence[Masked],
    colours: dict[str, torch.Tensor],
    encoder: DeviceJpegEncoder | None,
    skip: set[int],
) -> tuple[dict[tuple[int, str], bytes], float]:
    """JPEG parts encoded where the pixels are, in one batched call (CUDA only); the jobs
    in ``skip`` (finished on a canvas of their own) are encoded on the host."""
    if encoder is None:
        return {}, 0.0
    parts = [
        (index, name)
        for index, m in enumerate(items)
        for name in m.item.job.effects
        if name in colours
        and index not in skip
        and codec_for(EFFECTS[name], m.item.job.format) == "jpeg"
    ]
    if not parts:
        return {}, 0.0
    start = time.perf_counter()
    data = encoder([colours[name][index] for index, name in parts], JPEG_QUALITY)
    seconds = time.perf_counter() - start
    done = {}
    for (index, name), blob in zip(parts, data, strict=True):
        icc = items[index].item.icc_profile
        done[index, name] = add_jpeg_icc_profile(blob, icc) if icc else blob
    return done, seconds
