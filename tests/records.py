"""Job records for tests that drive the job store and the dispatcher directly."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from jobs.record import JobOptions, JobRecord, now_iso
from storage.keys import result_key
from storage.result_cache import StoredOutput


def job_record(
    job_id: str | None = None,
    status: str = "queued",
    *,
    effects: tuple[str, ...] = ("color",),
    content_key: str = "k",
    max_size: int = 64,
    format: str = "webp",
    **fields: Any,
) -> JobRecord:
    """A record as the API writes one (``fields``: any other of its attributes)."""
    record = JobRecord(
        id=job_id or uuid.uuid4().hex,
        status=status,
        created_at=now_iso(),
        options=JobOptions(tuple(effects), max_size, format),
        content_key=content_key,
    )
    return replace(record, **fields)


def stored(content_key: str, name: str, extension: str | None = None) -> StoredOutput:
    """An output entry as a worker stores one (8×6, 10 bytes)."""
    ext = extension or ("png" if name == "mask" else "webp")
    return StoredOutput(result_key(content_key, name, ext), f"image/{ext}", 8, 6, 10)
