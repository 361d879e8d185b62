"""``DELETE /api/v2/jobs/<id>``: cancel a job (``jobs.cancel`` says what that does); a job
that already succeeded or failed is ``409``."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.auth import owned_job
from api.errors import ApiError
from api.rendering import render_job
from api.services import services
from jobs.cancel import cancel

bp = Blueprint("cancel", __name__, url_prefix="/api/v2")


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
    owned_job(job_id)
    record, before = cancel(services(), job_id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id!r} (it may have expired)")
    if before in ("succeeded", "failed"):
        raise ApiError(409, "job_finished", f"the job already {before}; there is nothing to cancel")
    return jsonify(render_job(record, services().store))
