"""``GET /metrics`` for Prometheus, and the per-request measurements and log line behind it.

Under gunicorn every worker process writes its metrics to the multiprocess directory
(``gunicorn.conf.py`` prepares it) and whichever answers a scrape reports them all. The queue
series are read from the broker at each scrape.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jobs.queue import WaitingJobs, configured_queues
from jobs.services import JobServices
from observability import metrics
from observability.exposition import build_registry
from observability.queue_stats import QueueCollector

bp = Blueprint("metrics", __name__)
log = logging.getLogger("cutout.api")

# Scrapes and probes arrive every few seconds; their request lines are DEBUG, not INFO.
_QUIET_ENDPOINTS = frozenset({"metrics.scrape", "health.healthz", "health.readyz"})


@bp.get("/metrics")
def scrape():  # type: ignore[no-untyped-def]
    registry = current_app.extensions["cutout.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _started() -> None:
    g.cutout_started = time.perf_counter()


def _finished(response: Response) -> Response:
    started = g.pop("cutout_started", None)
    if started is None:
        return response
    seconds = time.perf_counter() - started
    endpoint = request.endpoint or "unmatched"
    metrics.REQUEST_DURATION.labels(endpoint=endpoint, status=str(response.status_code)).observe(
        seconds
    )
    code = _error_code(response)
    if code:
        metrics.ERRORS.labels(code=code).inc()
    log.log(
        logging.DEBUG if endpoint in _QUIET_ENDPOINTS else logging.INFO,
        "%s %s %d",
        request.method,
        request.path,
        response.status_code,
        extra={
            "stage": "request",
            "endpoint": endpoint,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            **({"error_code": code} if code else {}),
        },
    )
    return response


def _error_code(response: Response) -> str | None:
    if response.status_code < 400 or not response.is_json:
        return None
    body = response.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def instrument(app: Flask, svc: JobServices) -> None:
    """Measure every request and serve ``/metrics`` (with the broker's queues)."""
    waiting = WaitingJobs(svc.queue.broker, svc.jobs)
    collector = QueueCollector(waiting, configured_queues(svc.queue.producer.conf))
    app.extensions["cutout.metrics"] = build_registry(collector)
    metrics.initialise_series()
    app.before_request(_started)
    app.after_request(_finished)
    app.register_blueprint(bp)
