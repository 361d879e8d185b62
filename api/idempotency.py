"""``Idempotency-Key`` on submits: the same key and the same request within 24 h answer the
same job; the same key with a different request is ``409``.

A key is scoped to its API key. The first request claims it in Redis (``SET NX``) before it
queues anything, so two racing duplicates never make two jobs: the loser gets ``409`` with
``Retry-After`` until the winner's job exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import request

from api.auth import current_owner
from api.errors import ApiError
from api.services import services
from jobs.record import JobRecord

HEADER = "Idempotency-Key"
TTL_SECONDS = 24 * 3600
MAX_LENGTH = 255


def fingerprint(image: bytes, fields: dict[str, Any]) -> str:
    """What makes two requests "the same": the endpoint, the image and the parsed options."""
    return fingerprint_of(hashlib.sha256(image).hexdigest(), fields)


def fingerprint_of(image_sha256: str, fields: dict[str, Any]) -> str:
    """The same from the image's SHA-256: a hash-first submit and the upload that follows it
    are the same request."""
    parts = {"path": request.path, "image": image_sha256, **fields}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _key() -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not 1 <= len(key) <= MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters",
        )
    return key


def idempotent(request_fingerprint: str, submit: Callable[[], JobRecord]) -> JobRecord:
    """``submit()`` once per key; a repeat answers the job the first request made."""
    key = _key()
    if key is None:
        return submit()
    svc = services()
    digest = hashlib.sha256(key.encode()).hexdigest()
    slot = f"{svc.jobs.prefix}:idempotency:{current_owner() or '-'}:{digest}"
    for _ in range(3):  # a slot that expires or is abandoned between two reads is claimed anew
        if svc.redis.set(
            slot,
            json.dumps({"fingerprint": request_fingerprint, "job_id": None}),
            nx=True,
            ex=TTL_SECONDS,
        ):
            try:
                record = submit()
            except BaseException:
                svc.redis.delete(slot)  # nothing was queued: the client may retry the key
                raise
            svc.redis.set(
                slot,
                json.dumps({"fingerprint": request_fingerprint, "job_id": record.id}),
                keepttl=True,
            )
            return record
        raw = svc.redis.get(slot)
        if raw is None:
            continue
        held = json.loads(raw)
        if held["fingerprint"] != request_fingerprint:
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"this {HEADER} was used for a different request in the last 24 h",
            )
        if held["job_id"] is None:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                f"a request with this {HEADER} is still being queued; retry shortly",
                headers={"Retry-After": "1"},
            )
        earlier = svc.jobs.get(held["job_id"])
        if earlier is not None:
            return earlier
        svc.redis.delete(slot)  # the job expired before its key did
    raise ApiError(409, "idempotency_key_in_use", f"this {HEADER} is contended; retry shortly")
