"""The public shape of a job record in an answer (see ``jobs.public``)."""

from __future__ import annotations

from typing import Any

from flask import request

from jobs.public import public_job
from jobs.record import JobRecord
from storage import ObjectStore


def render_job(record: JobRecord, store: ObjectStore) -> dict[str, Any]:
    return public_job(record, store, request.host_url)
