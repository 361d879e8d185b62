"""Every Prometheus metric of the service, defined once so every process records the same series.

The API records requests, submissions and the result cache's answers (``cutout_cache_*``,
counted where it looks a content key up); workers record job stages from the pipeline's timings
(``workers/`` knows nothing of Prometheus); a job's end is recorded once, by whichever process
ended it (``jobs/end_hook.py``); the webhook task counts each delivery attempt. Series read at
scrape time (queue depth and age, GPU memory and utilisation) are collectors in
``queue_stats.py`` and ``exposition.py``. Every name starts with ``cutout_``, as Prometheus's
naming guide asks of an application's own metrics; docs/monitoring.md lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_DURATION = Histogram(
    "cutout_request_duration_seconds",
    "HTTP requests, by Flask endpoint and status code",
    ["endpoint", "status"],
    buckets=(*_FAST, 30.0, 60.0, 120.0),
)
JOBS = Counter(
    "cutout_jobs_total",
    "Jobs, by status: queued, each job the API queues or attaches to an identical running job; "
    "succeeded, failed, canceled, each job that ends (cache hits included), counted by the "
    "process that ended it",
    ["status"],
)
ERRORS = Counter(
    "cutout_errors_total",
    "Errors, by machine-readable code: API error responses and failed jobs",
    ["code"],
)
JOB_DURATION = Histogram(
    "cutout_job_duration_seconds",
    "Submit to terminal state, by outcome",
    ["outcome"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600),
)
DECODE = Histogram("cutout_decode_seconds", "Decoding one job's upload", buckets=_FAST)
INFERENCE = Histogram(
    "cutout_model_inference_seconds",
    "One batch through the segmentation engine, by engine",
    ["engine"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
)
EFFECTS = Histogram(
    "cutout_effect_processing_seconds", "All requested effects of one job", buckets=_FAST
)
ENCODE = Histogram("cutout_encode_seconds", "Encoding all outputs of one job", buckets=_FAST)
STORE = Histogram("cutout_store_seconds", "Writing one job's outputs to storage", buckets=_FAST)
BATCH_SIZE = Histogram(
    "cutout_batch_size",
    "Images that went through the model together",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
BUSY = Counter("cutout_worker_busy_seconds_total", "Seconds this worker spent running batches")
IMAGES = Counter("cutout_images_processed_total", "Images that went through a batch on this worker")
REDUCED_INPUT = Counter(
    "cutout_reduced_input_images_total",
    "Images run at the reduced model input because the gpu queue was deep (adaptive quality)",
)
COLD_START = Gauge(
    "cutout_cold_start_duration_seconds",
    "Worker start-up, by phase: load (weights and engine), warm_up, total (process start to "
    "ready for jobs)",
    ["phase"],
    multiprocess_mode="mostrecent",
)
COST = Gauge(
    "cutout_cost_per_1k_images",
    "Dollars per 1000 images from CUTOUT_COST_PER_HOUR and the measured throughput; basis busy: "
    "while running batches (the cost at full load), wall: since the worker started (idle "
    "time included)",
    ["basis"],
    multiprocess_mode="mostrecent",
)
# Counted by the API processes (summed across gunicorn workers by multiprocess mode, across
# replicas by the query), one per submission that reached the cache (idempotent repeats not).
CACHE_HITS = Counter("cutout_cache_hits_total", "Submissions answered from the result cache")
CACHE_MISSES = Counter(
    "cutout_cache_misses_total",
    "Submissions the result cache could not answer, queued to compute all or some outputs",
)
CACHE_INFLIGHT_JOINS = Counter(
    "cutout_cache_inflight_joins_total", "Submissions attached to an identical job still running"
)
WEBHOOK_DELIVERIES = Counter(
    "cutout_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered (2xx), retried (failed, will be tried "
    "again), failed (failed, given up)",
    ["outcome"],
)

# Known label values are created up front so their series exist (at 0) before the first event.
JOB_STATUSES = ("queued", "succeeded", "failed", "canceled")
WEBHOOK_OUTCOMES = ("delivered", "retried", "failed")
JOB_ERROR_CODES = (
    "invalid_image",
    "processing_failed",
    "storage_error",
    "storage_unavailable",
    "input_missing",
    "internal_error",
    "enqueue_failed",
    "resources_exhausted",
)


def initialise_series() -> None:
    for status in JOB_STATUSES:
        JOBS.labels(status=status)
    for code in JOB_ERROR_CODES:
        ERRORS.labels(code=code)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_DELIVERIES.labels(outcome=outcome)


def _seconds(timings: Mapping[str, Any], key: str) -> float | None:
    value = timings.get(key)
    return None if value is None else float(value) / 1000


def record_job_stages(timings: Mapping[str, Any]) -> None:
    """Per-job stage times (the pipeline's ``*_ms`` timings); stages a job never reached are
    skipped."""
    for key, histogram in (("decode_ms", DECODE), ("effects_ms", EFFECTS), ("encode_ms", ENCODE)):
        seconds = _seconds(timings, key)
        if seconds is not None:
            histogram.observe(seconds)


def record_model_call(engine: str, seconds: float, images: int) -> None:
    """One engine call: a batch, or part of one (a batch of several input sizes, or split
    after running out of device memory, makes several)."""
    INFERENCE.labels(engine=engine).observe(seconds)
    BATCH_SIZE.observe(images)


def record_batch(images: int, busy_seconds: float) -> None:
    """One batch of ``images`` jobs ended; ``busy_seconds``: what it adds to the time during
    which some batch ran (batches in flight at once count once, see ``cost.BusyClock``)."""
    BUSY.inc(busy_seconds)
    IMAGES.inc(images)


def record_job_end(status: str, timings: Mapping[str, Any], error_code: str | None) -> None:
    JOBS.labels(status=status).inc()
    total = _seconds(timings, "total_ms")
    if total is not None:
        JOB_DURATION.labels(outcome=status).observe(total)
    store = _seconds(timings, "store_ms")
    if store is not None:
        STORE.observe(store)
    if error_code:
        ERRORS.labels(code=error_code).inc()


def record_cold_start(phase: str, seconds: float) -> None:
    COLD_START.labels(phase=phase).set(seconds)
