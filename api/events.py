"""``GET /api/v2/jobs/<id>/events``: the job's changes as Server-Sent Events (``jobs/events.py``).

One event per state change (``queued`` with the gpu queue's depth, ``processing``,
``preview``, then ``succeeded`` / ``failed`` / ``canceled``), each carrying the job as
``GET /api/v2/jobs/<id>`` answers it; the stream ends after the final event. A comment every
``EVENTS_HEARTBEAT_SECONDS`` keeps proxies from closing an idle stream. Same key, same
ownership, same read limit as the other job endpoints. Served by the events process
(``api/events_server.py``) in production, so open streams never hold the API's threads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context

from api.auth import owned_job
from api.errors import ApiError
from api.services import services
from jobs.events import ChangeFeed, JobEvent, follow
from jobs.public import public_job

bp = Blueprint("events", __name__, url_prefix="/api/v2")

EXTENSION = "cutout_feed"


def change_feed() -> ChangeFeed:
    """The process's one subscription to every job's changes (made on first use)."""
    feed = current_app.extensions.get(EXTENSION)
    if feed is None:
        svc = services()
        feed = current_app.extensions.setdefault(EXTENSION, ChangeFeed(svc.redis, svc.jobs))
    return feed  # type: ignore[no-any-return]


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID", request.args.get("last_event_id", "")).strip()
    if not raw:
        return 0
    if not raw.isdigit() or len(raw) > 6:
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must be an event's id")
    return int(raw)


def _frame(event: JobEvent, body: dict[str, Any]) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(body)}\n\n"


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    after = _last_event_id()
    svc = services()
    try:
        subscription = change_feed().subscribe(job_id)  # before reading: no change slips by
    except ConnectionError as exc:
        raise ApiError(503, "events_unavailable", "job events are unavailable; poll") from exc
    try:
        first = owned_job(job_id)
    except BaseException:
        subscription.close()
        raise
    base_url = request.host_url
    heartbeat = float(current_app.config["EVENTS_HEARTBEAT_SECONDS"])

    def stream() -> Iterator[str]:
        with subscription:
            yield "retry: 2000\n\n"  # how soon a client's EventSource reconnects
            for event in follow(subscription, svc.jobs, first, after, heartbeat):
                if event is None:
                    yield ": keep-alive\n\n"
                    continue
                body = public_job(event.record, svc.store, base_url)
                if event.kind == "queued":  # cheap: a few LLENs on the broker
                    body["queue_depth"] = svc.queue.depth()
                yield _frame(event, body)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(stream()), mimetype="text/event-stream", headers=headers)
