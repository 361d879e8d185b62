"""``/api/v2/jobs`` and the old synchronous ``/api/v2/process-with-effects``."""

from __future__ import annotations

import dataclasses
import logging

import redis
from flask import Blueprint, current_app, jsonify, request, url_for

from api.auth import current_owner, owned_job
from api.errors import ApiError, error_body
from api.hash_first import submit_by_hash_from_request
from api.idempotency import fingerprint, idempotent
from api.limits import queue_admission
from api.rendering import render_job
from api.services import services
from api.uploads import parse_options, read_background, read_image
from api.webhook_url import parse_webhook
from jobs.record import JobError, JobRecord
from jobs.submission import new_record, submit
from observability import metrics

bp = Blueprint("jobs", __name__, url_prefix="/api/v2")
log = logging.getLogger("cutout.api")

MAX_WAIT_SECONDS = 120.0
UNPROCESSABLE = frozenset({"invalid_image", "invalid_background", "no_subject"})


def _submit_from_request() -> JobRecord:
    data, info = read_image(request.files)
    background = read_background(request.files)
    options = parse_options(request.form, current_app.config["DEFAULT_MAX_SIZE"], background)
    webhook = parse_webhook(request.form)

    def queue() -> JobRecord:
        model_id = current_app.config["MODEL_ID"]
        record = new_record(model_id, data, info, options, current_owner(), webhook)
        try:
            record = submit(services(), record, data, queue_admission, background)
        except (ApiError, redis.ConnectionError, redis.TimeoutError):
            raise  # Redis unreachable: 503 store_unavailable (api/errors.py)
        except Exception as exc:
            # A job the queue refused was failed (enqueue_failed) and counted as it ended.
            current_app.logger.exception("could not queue a job")
            raise ApiError(
                503, "queue_unavailable", "the job queue is unavailable; retry later"
            ) from exc
        if not record.ended:  # a hit was counted as it ended (succeeded)
            metrics.JOBS.labels(status="queued").inc()
        upload = dataclasses.asdict(record.input) if record.input else None
        log.info(
            "job %s %s",
            record.id,
            record.status,
            extra={"stage": "submitted", "job_id": record.id, "input": upload},
        )
        return record

    same = {"options": options.as_dict(), "webhook_url": webhook and webhook.url}
    return idempotent(fingerprint(data, same), queue)


def _accepted(record: JobRecord, status: int = 202):  # type: ignore[no-untyped-def]
    response = jsonify(render_job(record, services().store))
    response.status_code = status
    response.headers["Location"] = url_for("jobs.get_job", job_id=record.id)
    return response


@bp.post("/jobs")
def create_job():  # type: ignore[no-untyped-def]
    """``202`` with the queued job, or ``200`` with the finished one when the cache had it.
    A JSON body is a hash-first submit (``api/hash_first.py``): ``200`` or ``428``."""
    if request.is_json:
        record = submit_by_hash_from_request()
        return _accepted(record, 200 if record.status == "succeeded" else 202)
    record = _submit_from_request()
    return _accepted(record, 200 if record.status == "succeeded" else 202)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):  # type: ignore[no-untyped-def]
    return jsonify(render_job(owned_job(job_id), services().store))


def _parse_timeout(raw: str | None) -> float:
    if raw is None or raw.strip() == "":
        return float(current_app.config["SYNC_WAIT_SECONDS"])
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_timeout", "timeout must be a number of seconds") from None
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise ApiError(
            400, "invalid_timeout", f"timeout must be between 0 and {MAX_WAIT_SECONDS:.0f}"
        )
    return value


@bp.post("/process-with-effects")
def process_with_effects():  # type: ignore[no-untyped-def]
    """Submit and wait (bounded) for the same kind of job; for clients of the old service."""
    timeout = _parse_timeout(request.form.get("timeout"))
    record = _submit_from_request()
    finished = services().jobs.wait(record.id, timeout) or record
    body = render_job(finished, services().store)
    if finished.status == "succeeded":
        return jsonify(body)
    if finished.status in ("queued", "processing"):
        return _accepted(finished)
    if finished.status == "canceled":  # by a DELETE while this request waited
        return jsonify(error_body("job_canceled", "the job was canceled", job=body)), 409
    error = finished.error or JobError("failed", "the job failed")
    if error.code == "storage_unavailable":  # the outage outlasted the worker's window
        return jsonify(error_body(error.code, error.message, job=body)), 503, {"Retry-After": "30"}
    # The upload's fault (unreadable, or a photo without a subject to crop to): 422.
    status = 422 if error.code in UNPROCESSABLE else 500
    return jsonify(error_body(error.code, error.message, job=body)), status
