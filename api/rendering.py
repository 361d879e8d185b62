"""The public shape of a job record in an answer (see ``storage.public_job``)."""

from __future__ import annotations

from typing import Any

from flask import request

from storage import ObjectStore
from storage.public_job import public_job


def render_job(record: dict[str, Any], store: ObjectStore) -> dict[str, Any]:
    return public_job(record, store, request.host_url)
