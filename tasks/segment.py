"""The ``gpu`` queue's task: job ids arrive in micro-batches (celery-batches)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import redis
from celery import shared_task
from celery_batches import Batches, SimpleRequest

from storage import StorageSettings, build_store
from storage.heartbeats import Heartbeats
from storage.jobs import JobStore
from tasks.run_jobs import JobRunner

log = logging.getLogger("cutout.segment")


class SegmentTask(Batches):
    """Holds the per-process model, stores and thread pool, built on first use."""

    @property  # type: ignore[override]
    def flush_every(self) -> int:
        return int(self.app.conf.cutout_flush_every)

    @property  # type: ignore[override]
    def flush_interval(self) -> float:
        return float(self.app.conf.cutout_flush_interval)

    @cached_property
    def storage_settings(self) -> StorageSettings:
        return StorageSettings.from_env()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.storage_settings.redis_url)

    @cached_property
    def heartbeats(self) -> Heartbeats:
        return Heartbeats(self.redis, self.storage_settings.key_prefix)

    @cached_property
    def runner(self) -> JobRunner:
        from workers.pipeline import Pipeline
        from workers.predictor import load_segmenter
        from workers.settings import WorkerSettings

        settings = WorkerSettings.from_env()
        segmenter, seconds = load_segmenter(settings)
        log.info("model %s loaded on %s in %.2fs", settings.model, segmenter.device, seconds)
        pool = ThreadPoolExecutor(settings.encode_threads or None, thread_name_prefix="cutout-io")
        jobs = JobStore(
            self.redis, self.storage_settings.key_prefix, self.storage_settings.job_ttl_seconds
        )
        return JobRunner(jobs, build_store(self.storage_settings), Pipeline(segmenter, pool))


@shared_task(base=SegmentTask, bind=True, name="cutout.segment")
def segment(self: SegmentTask, requests: list[SimpleRequest]) -> None:
    job_ids = [request.args[0] for request in requests]
    try:
        statuses = self.runner.run(job_ids)
    except Exception as exc:
        log.exception("batch of %d jobs failed", len(job_ids))
        for job_id in job_ids:
            self.runner.fail(job_id, "internal_error", f"the worker failed: {exc}")
        statuses = {job_id: "failed" for job_id in job_ids}
    for request in requests:
        status = statuses.get(request.args[0], "expired")
        result: dict[str, Any] = {"job_id": request.args[0], "status": status}
        if status == "failed":
            self.backend.mark_as_failure(
                request.id, JobFailed(request.args[0]), request=request, call_errbacks=False
            )
        else:
            self.backend.mark_as_done(request.id, result, request=request)


class JobFailed(Exception):
    """Recorded as the Celery result of a job that failed; the job record says why."""
