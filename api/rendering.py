"""The public shape of a job record: storage keys become URLs, internals stay inside."""

from __future__ import annotations

from typing import Any

from flask import request

from storage import ObjectStore

_PUBLIC = (
    "id",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "options",
    "model",
    "batch_size",
    "cache",
    "computed",
    "error",
)


def absolute(url: str) -> str:
    return request.host_url.rstrip("/") + url if url.startswith("/") else url


def render_job(record: dict[str, Any], store: ObjectStore) -> dict[str, Any]:
    body = {field: record.get(field) for field in _PUBLIC}
    body["outputs"] = {
        name: {
            "url": absolute(store.url(out["key"])),
            "content_type": out["content_type"],
            "width": out["width"],
            "height": out["height"],
        }
        for name, out in (record.get("outputs") or {}).items()
    }
    body["timings"] = record.get("timings") or {}
    return body
