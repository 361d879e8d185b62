"""Turning a validated upload into a queued job: stage the bytes, write the record, enqueue."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from api.services import Services
from api.uploads import JobOptions
from storage.jobs import now_iso
from storage.keys import content_key, staging_key
from workers.effect_names import EFFECTS_VERSION
from workers.imageio import ImageInfo


def job_content_key(image_sha256: str, model_id: str, options: JobOptions) -> str:
    """Same photo + same model + same effect definitions + same options = same outputs."""
    return content_key(
        [image_sha256, model_id, EFFECTS_VERSION, str(options.max_size), options.format]
    )


def submit(
    svc: Services,
    data: bytes,
    info: ImageInfo,
    options: JobOptions,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``extra``: more fields for the record (its ``owner``, its ``webhook`` state)."""
    job_id = uuid.uuid4().hex
    image_sha = hashlib.sha256(data).hexdigest()
    record: dict[str, Any] = {
        "id": job_id,
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
        "outputs": {},
        "error": None,
        "timings": {},
        **(extra or {}),
    }
    svc.store.save(staging_key(job_id), data, "application/octet-stream")
    svc.jobs.create(record)
    try:
        svc.enqueue(job_id)
    except Exception as exc:
        # Nothing is lost silently: the job says why it never ran.
        svc.jobs.update(
            job_id,
            {
                "status": "failed",
                "completed_at": now_iso(),
                "error": {"code": "enqueue_failed", "message": f"could not queue the job: {exc}"},
            },
        )
        svc.store.delete(staging_key(job_id))
        raise
    return record
