"""``DELETE /api/v2/jobs/<id>``: cancel a job.

A queued job becomes ``canceled`` and never runs (the worker skips terminal jobs). A job
already on the worker finishes its batch, but the runner's terminal update refuses to
overwrite ``canceled``, so its outputs never reach the record. A finished job is ``409``.
Jobs attached to a canceled job (identical uploads waiting for its outputs) are handed over
at once: they are queued on their own, or finish from the cache; a canceled job that was
itself attached leaves its leader's list.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from api.auth import owned_job
from api.errors import ApiError
from api.rendering import render_job
from api.services import services
from storage.jobs import TERMINAL, ending
from storage.keys import staging_key

bp = Blueprint("cancel", __name__, url_prefix="/api/v2")


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    owned_job(job_id)
    svc = services()
    seen: dict[str, str] = {}
    end = ending("canceled")

    def cancel(current: dict[str, Any]) -> dict[str, Any] | None:
        seen["status"] = current["status"]  # the last call is the one that committed
        return end(current)

    record = svc.jobs.update(job_id, cancel)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (it may have expired)")
    if seen["status"] in ("succeeded", "failed"):
        raise ApiError(
            409, "job_finished", f"the job already {seen['status']}; there is nothing to cancel"
        )
    if seen["status"] == "queued":
        svc.store.delete(staging_key(job_id))  # no worker will read it now
    if seen["status"] not in TERMINAL:  # this request canceled it
        svc.dispatcher.canceled(record)
    return jsonify(render_job(record, svc.store))
