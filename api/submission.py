"""Turning a validated upload into a job: answered from the result cache when every output
exists, else staged, recorded and dispatched (queued, or attached to an identical job that is
already computing what it needs)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from api.services import Services
from api.uploads import JobOptions
from storage.cache_metrics import CACHE_HITS, CACHE_INFLIGHT_JOINS, CACHE_MISSES
from storage.jobs import ms_between, now_iso
from storage.keys import content_key, staging_key
from storage.result_cache import output_names
from workers.effect_names import EFFECTS_VERSION
from workers.imageio import ImageInfo

_COUNTER = {"hit": CACHE_HITS, "follow": CACHE_INFLIGHT_JOINS, "lead": CACHE_MISSES}


def job_content_key(image_sha256: str, model_id: str, options: JobOptions) -> str:
    """Same photo + same model + same effect definitions + same options = same outputs.

    The effect set is not part of it: outputs are stored and cached per effect."""
    return content_key(
        [image_sha256, model_id, EFFECTS_VERSION, str(options.max_size), options.format]
    )


def new_record(svc: Services, data: bytes, info: ImageInfo, options: JobOptions) -> dict[str, Any]:
    image_sha = hashlib.sha256(data).hexdigest()
    return {
        "id": uuid.uuid4().hex,
        "status": "queued",
        "created_at": now_iso(),
        "started_at": None,
        "completed_at": None,
        "options": options.as_dict(),
        "input": {
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "bytes": len(data),
            "sha256": image_sha,
        },
        "model": svc.model_id,
        "content_key": job_content_key(image_sha, svc.model_id, options),
        "cache": None,  # hit | joined | miss | partial, once known
        "outputs": {},
        "error": None,
        "timings": {},
    }


def answer_from_cache(svc: Services, record: dict[str, Any]) -> dict[str, Any] | None:
    """The job, already succeeded, when every requested output is cached; None otherwise.
    Nothing is staged or queued for a hit."""
    names = output_names(record["options"]["effects"])
    outputs = svc.cache.lookup(record["content_key"], names)
    if len(outputs) < len(names):
        return None
    done = now_iso()
    finished = {
        **record,
        "status": "succeeded",
        "started_at": done,
        "completed_at": done,
        "cache": "hit",
        "outputs": outputs,
        "timings": {"total_ms": ms_between(record["created_at"], done)},
    }
    svc.jobs.create(finished)
    return finished


def stage_and_dispatch(svc: Services, record: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Stage the input, record the job and dispatch it; returns the record as it then stands
    and counts the outcome. Raises if the queue refused the job (which is then failed)."""
    svc.store.save(staging_key(record["id"]), data, "application/octet-stream")
    svc.jobs.create(record)
    claim, current = svc.dispatcher.dispatch(record)
    svc.metrics.count(_COUNTER[claim.outcome])
    return current


def submit(svc: Services, data: bytes, info: ImageInfo, options: JobOptions) -> dict[str, Any]:
    record = new_record(svc, data, info, options)
    hit = answer_from_cache(svc, record)
    if hit is not None:
        svc.metrics.count(CACHE_HITS)
        return hit
    return stage_and_dispatch(svc, record, data)
