"""The ``gpu`` queue's task: job ids arrive in micro-batches (celery-batches)."""

from __future__ import annotations

import logging
import uuid
from functools import cached_property
from typing import TYPE_CHECKING, Any

from celery import shared_task
from celery_batches import Batches, SimpleRequest

from jobs.adaptive import AdaptiveQuality
from jobs.queue import GPU_QUEUE, SEGMENT_TASK
from jobs.runner import JobRunner
from observability import metrics
from observability.cost import CostMeter
from tasks.resources import JobResources
from tasks.task_events import BatchEvents, failure
from workers.memory import release_free_memory
from workers.settings import WorkerSettings

if TYPE_CHECKING:
    from workers.engine_switch import EngineSwitch
    from workers.pipeline import Pipeline
    from workers.predictor import Segmenter

log = logging.getLogger("cutout.segment")


class SegmentTask(JobResources, Batches):
    """Holds the per-process model, stores and thread pool, built on first use (the worker
    builds them before it takes jobs, so the batches in flight never race to)."""

    @property  # type: ignore[override]
    def flush_every(self) -> int:
        return int(self.app.conf.cutout_flush_every)

    @property  # type: ignore[override]
    def flush_interval(self) -> float:
        return float(self.app.conf.cutout_flush_interval)

    @cached_property
    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings.from_env()

    @cached_property
    def pipeline(self) -> Pipeline:
        from workers.build import build_pipeline  # torch: only where a batch will run

        built = build_pipeline(self.worker_settings)  # its pool lives as long as the worker
        seconds, device = built.load_seconds, built.pipeline.segmenter.device
        log.info("model %s loaded on %s in %.2fs", self.worker_settings.model, device, seconds)
        metrics.record_cold_start("load", seconds)
        return built.pipeline

    @cached_property
    def runner(self) -> JobRunner:
        from workers.build import BatchProcessor

        reduced_input = self.pipeline.segmenter.reduced_input
        threshold = self.worker_settings.adaptive_queue_depth
        quality = AdaptiveQuality(self.services.queue.depth, threshold, reduced_input)
        if quality.enabled:
            log.info(
                "adaptive quality: %d px input while over %d jobs wait on %s",
                reduced_input,
                threshold,
                GPU_QUEUE,
            )
        processor = BatchProcessor(self.pipeline)
        return JobRunner(
            self.services.dispatcher,
            processor,
            CostMeter.from_env(),
            quality,
            storage_retry_for=self.services.settings.storage_retry_seconds,
        )

    @cached_property
    def engine_switch(self) -> EngineSwitch | None:
        """The first run's background gate and engine switch (``CUTOUT_ENGINE=auto`` with no
        gate report for this device yet); None when there is nothing to gate."""
        from workers.engine_switch import EngineSwitch, needs_background_gate

        if not needs_background_gate(self.worker_settings):
            return None
        return EngineSwitch(self.pipeline, self.worker_settings, self._engine_switched)

    def _engine_switched(self, segmenter: Segmenter) -> None:
        # Adaptive quality follows the new engine: its reduced input is the one the gate
        # allowed for it, or none.
        if self.runner.quality is not None:
            self.runner.quality.reduced_input = segmenter.reduced_input

    def stop_engine_switch(self) -> None:
        switch = self.__dict__.get("engine_switch")
        if switch is not None:
            switch.stop()


@shared_task(base=SegmentTask, bind=True, name=SEGMENT_TASK)
def segment(self: SegmentTask, requests: list[SimpleRequest]) -> None:
    job_ids = [request.args[0] for request in requests]
    batch_id = uuid.uuid4().hex[:12]
    events = BatchEvents(self.app, requests)
    events.started()
    try:
        statuses = self.runner.run(job_ids, batch_id=batch_id)
    except Exception as exc:
        log.exception("batch of %d jobs failed", len(job_ids), extra={"batch_id": batch_id})
        for job_id in job_ids:
            self.runner.fail(job_id, "internal_error", f"the worker failed: {exc}")
        statuses = {job_id: "failed" for job_id in job_ids}
    by_request = {r.id: statuses.get(r.args[0], "expired") for r in requests}
    failed = [r for r in requests if by_request[r.id] == "failed"]
    records = self.services.jobs.get_many([r.args[0] for r in failed]) if failed else []
    failures = {
        r.id: failure(r.args[0], record.error if record else None)
        for r, record in zip(failed, records, strict=True)
    }
    for request in requests:
        status = by_request[request.id]
        result: dict[str, Any] = {"job_id": request.args[0], "status": status}
        if status == "failed":
            self.backend.mark_as_failure(
                request.id, failures[request.id], request=request, call_errbacks=False
            )
        else:
            self.backend.mark_as_done(request.id, result, request=request)
    events.ended(by_request, failures)
    release_free_memory()  # what the batch freed goes back to the system (workers/memory.py)
