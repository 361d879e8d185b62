"""The public shape of a job record: storage keys become URLs, internals stay inside.

Shared by the API (answers) and the webhook sender (payloads), so both show the same job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.record import JobRecord
from storage.base import ObjectStore
from storage.result_cache import StoredOutput

PUBLIC_FIELDS = (
    "id",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "options",
    "model",
    "batch_size",
    "model_input",  # the model input side the job ran at (smaller under load); null if none ran
    "cache",  # hit | joined | miss | partial: how the result cache served the job
    "computed",  # the outputs this job's worker computed (the rest came from the cache)
    "error",
)
# Delivery state of the job's webhook; its lease ("claim") and start are internal.
WEBHOOK_FIELDS = (
    "url",
    "state",
    "attempts",
    "last_status",
    "last_error",
    "delivered_at",
    "next_attempt_at",
    "history",
)


def absolute(url: str, base_url: str) -> str:
    return base_url.rstrip("/") + url if url.startswith("/") else url


def public_job(record: JobRecord, store: ObjectStore, base_url: str) -> dict[str, Any]:
    """The job as clients see it (``PUBLIC_FIELDS``, then its outputs, preview, timings and
    webhook); relative storage URLs are made absolute on ``base_url``."""

    def links(outputs: Mapping[str, StoredOutput]) -> dict[str, Any]:
        return {
            name: {
                "url": absolute(store.url(out.key), base_url),
                "content_type": out.content_type,
                "width": out.width,
                "height": out.height,
            }
            for name, out in outputs.items()
        }

    data = record.to_dict()
    body = {field: data[field] for field in PUBLIC_FIELDS}
    body["outputs"] = links(record.outputs)
    # The subject's box in output pixels, as remove.bg's X-Foreground-* headers give it.
    box = record.foreground
    body["foreground"] = (
        None if box is None else dict(zip(("left", "top", "width", "height"), box, strict=True))
    )
    # Small WebPs of the effects, stored while the job still runs when it asked for them.
    body["preview"] = links(record.preview) if record.preview else None
    body["timings"] = dict(record.timings)
    if record.webhook is not None:
        body["webhook"] = {field: data["webhook"][field] for field in WEBHOOK_FIELDS}
    return body
