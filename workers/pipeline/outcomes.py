"""Each job's outcome, assembled once at the end from what the stages handed back: its
outputs (or why it failed) and its timings."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from workers.imageio import CODECS
from workers.pipeline.device import Masked
from workers.pipeline.host import Encoding
from workers.pipeline.jobs import EncodedOutput, Failure, JobInput, JobOutcome, OnPreview
from workers.pipeline.previews import PREVIEW_CODEC
from workers.pipeline.timing import ms

log = logging.getLogger("cutout.pipeline")


def publish_previews(encoding: Encoding, began: float, on_preview: OnPreview) -> float | None:
    """Hand a job's previews over as soon as they are encoded; returns ``preview_ms`` (None
    when the preview failed: that is logged and the job goes on)."""
    content_type, extension = CODECS[PREVIEW_CODEC]
    width, height = encoding.preview_size
    job_id = encoding.item.job.job_id
    try:
        outputs = [
            EncodedOutput(name, future.result(), content_type, extension, width, height)
            for name, future in encoding.previews.items()
        ]
        elapsed = ms(time.perf_counter() - began)
        on_preview(job_id, outputs)
        return elapsed
    except Exception:
        log.exception("the preview of job %s failed", job_id)
        return None


Collected = tuple[list[EncodedOutput], float, tuple[int, int, int, int]]


def collect(encoding: Encoding) -> Collected | Failure:
    """The job's outputs once encoded, ``encode_ms`` and the subject's box; or why one
    failed."""
    height, width = encoding.size
    outputs = []
    try:
        for name, (result, codec) in encoding.outputs.items():
            data = result if isinstance(result, bytes) else result.result()
            content_type, extension = CODECS[codec]
            outputs.append(EncodedOutput(name, data, content_type, extension, width, height))
        box = encoding.foreground.result().as_tuple()
    except Exception as exc:
        return Failure.of(exc)
    seconds = time.perf_counter() - encoding.started
    return outputs, ms(seconds) + encoding.device_encode_ms, box


def assemble(
    jobs: Sequence[JobInput],
    decode_ms: Mapping[str, float],
    masked: Sequence[Masked],
    failures: Mapping[str, Failure],
    finished: Mapping[str, Collected | Failure],
    encodings: Mapping[str, Encoding],
    preview_ms: Mapping[str, float],
) -> list[JobOutcome]:
    """One outcome per job, in the jobs' order, with whatever stages it went through."""
    by_job = {m.item.job.job_id: m for m in masked}
    outcomes = []
    for job in jobs:
        outcome = JobOutcome(job.job_id)
        if job.job_id in decode_ms:
            outcome.timings["decode_ms"] = decode_ms[job.job_id]
        if job.job_id in by_job:
            call = by_job[job.job_id].call
            outcome.timings["inference_ms"] = ms(call.seconds)
            outcome.batch_size, outcome.model_input = call.images, call.input_size
        if job.job_id in encodings:
            encoding = encodings[job.job_id]
            outcome.timings["effects_ms"] = encoding.effects_ms
        if job.job_id in preview_ms:
            outcome.timings["preview_ms"] = preview_ms[job.job_id]
        result = failures.get(job.job_id) or finished.get(job.job_id)
        if isinstance(result, Failure):
            outcome.error_code, outcome.error_message = result.code, result.message
        elif result is not None:
            outcome.outputs, outcome.timings["encode_ms"], outcome.foreground = result
        outcomes.append(outcome)
    return outcomes
