"""Running a batch of queued jobs: records and staged inputs in, outputs and records out.

No Celery here: the task hands over job ids and gets back each job's terminal status. Each
job computes only the outputs the result cache lacks when it starts; how a job ends (and what
becomes of identical jobs attached to it) is the dispatcher's business, and what is recorded
when it ends (metrics, the terminal log line, the webhook) the job store's hook's
(``tasks/job_end.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.dispatch import Dispatcher
from storage.jobs import TERMINAL, ms_between, now_iso
from storage.keys import result_key, staging_key
from storage.result_cache import Output, output_names
from tasks import metrics
from tasks.cost import CostMeter
from tasks.logs import log_job_stage
from workers.pipeline import JobInput, JobOutcome, Pipeline

log = logging.getLogger("cutout.jobs")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass(frozen=True)
class Started:
    record: dict[str, Any]
    cached: dict[str, Output]  # the outputs it needs that were cached when it started
    input: JobInput  # asks the pipeline for the missing effects only


class JobRunner:
    def __init__(
        self, dispatcher: Dispatcher, pipeline: Pipeline, cost: CostMeter | None = None
    ) -> None:
        self.dispatcher = dispatcher
        self.jobs = dispatcher.jobs
        self.store = dispatcher.store
        self.cache = dispatcher.cache
        self.pipeline = pipeline
        self.cost = cost

    def run(self, job_ids: Sequence[str], batch_id: str = "") -> dict[str, str]:
        """Process the jobs; returns each job's status afterwards (jobs gone are left out)."""
        began = time.perf_counter()
        statuses: dict[str, str] = {}
        started: dict[str, Started] = {}
        for job_id in dict.fromkeys(job_ids):  # a redelivered duplicate runs once
            prepared = self._prepare(job_id, batch_id)
            if isinstance(prepared, Started):
                started[job_id] = prepared
            elif prepared is not None:
                statuses[job_id] = prepared
        if started:
            outcomes = self.pipeline.run([s.input for s in started.values()])
            for outcome in outcomes:
                log_job_stage(
                    "processed",
                    outcome.job_id,
                    batch_id,
                    outcome.timings,
                    batch_size=outcome.batch_size,
                    error_code=outcome.error_code,
                )
                metrics.record_job_stages(outcome.timings)
                statuses[outcome.job_id] = self._finish(started[outcome.job_id], outcome)
            self._record_batch(outcomes, time.perf_counter() - began, batch_id)
        return statuses

    def _record_batch(self, outcomes: list[JobOutcome], seconds: float, batch_id: str) -> None:
        ran = next((o for o in outcomes if "inference_ms" in o.timings), None)
        inference_ms = ran.timings["inference_ms"] if ran else None
        model_batch = ran.batch_size if ran else 0
        engine = self.pipeline.segmenter.engine.name
        metrics.record_batch(engine, inference_ms, model_batch, len(outcomes), seconds)
        if self.cost is not None:
            self.cost.add(len(outcomes), seconds)
        log.info(
            "batch of %d done in %.3fs",
            len(outcomes),
            seconds,
            extra={
                "stage": "batch",
                "batch_id": batch_id,
                "jobs": len(outcomes),
                "batch_size": model_batch,
                "engine": engine,
                "timings": {"inference_ms": inference_ms, "batch_ms": _ms(seconds)},
            },
        )

    def _prepare(self, job_id: str, batch_id: str) -> Started | str | None:
        """Start the job and load what it needs to compute; or end it at once and return its
        status (None: the job is gone)."""
        record = self._start(job_id, batch_id)
        if record is None:
            return None
        if record["status"] != "processing":
            self.dispatcher.settle(record)  # a canceled leader's followers run on their own
            return str(record["status"])
        options = record["options"]
        names = output_names(options["effects"])
        cached = self.cache.lookup(record["content_key"], names)
        if len(cached) == len(names):  # computed meanwhile (or before a redelivery)
            return self._end(job_id, cached, computed=[])
        try:
            data = self.store.open(staging_key(job_id))
        except FileNotFoundError:
            return self.fail(job_id, "input_missing", "the staged upload is gone")
        missing = tuple(e for e in options["effects"] if e not in cached)
        job = JobInput(job_id, data, missing, options["max_size"], options["format"])
        return Started(record, cached, job)

    def _start(self, job_id: str, batch_id: str) -> dict[str, Any] | None:
        def begin(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["status"] in TERMINAL:
                return None  # canceled before it ran, or already done (a redelivery)
            started = now_iso()
            return {
                "status": "processing",
                "started_at": started,
                "batch_id": batch_id,  # internal: ties the job's terminal log line to its batch
                "timings": {
                    **current.get("timings", {}),
                    "queue_ms": ms_between(current["created_at"], started),
                },
            }

        record = self.jobs.update(job_id, begin)
        if record is None:
            log.warning("job %s expired before it ran", job_id)
        elif record["status"] == "processing":
            queue_ms = {"queue_ms": record["timings"]["queue_ms"]}
            log_job_stage("started", job_id, batch_id, queue_ms)
        return record

    def fail(self, job_id: str, code: str, message: str) -> str:
        """End a job as failed (unless it already ended) and drop its staged input."""
        return self.dispatcher.fail(job_id, code, message)

    def _end(self, job_id: str, outputs: dict[str, Output], **fields: Any) -> str:
        record = self.dispatcher.finish(job_id, outputs, **fields)
        return record["status"] if record else "succeeded"

    def _finish(self, started: Started, outcome: JobOutcome) -> str:
        record, cached = started.record, started.cached
        job_id = record["id"]
        if not outcome.ok:
            return self.fail(job_id, outcome.error_code or "failed", outcome.error_message or "")
        start = time.perf_counter()
        computed: dict[str, Output] = {}
        try:
            for out in outcome.outputs:
                if out.name in cached:
                    continue  # never overwrite what clients may already hold (the mask)
                key = result_key(record["content_key"], out.name, out.extension)
                self.store.save(key, out.data, out.content_type, immutable=True)
                computed[out.name] = {
                    "key": key,
                    "content_type": out.content_type,
                    "width": out.width,
                    "height": out.height,
                    "bytes": len(out.data),
                }
            self.cache.store(record["content_key"], computed)
        except Exception as exc:
            log.exception("storing outputs of job %s failed", job_id, extra={"job_id": job_id})
            return self.fail(job_id, "storage_error", f"could not store the outputs: {exc}")
        outputs = {
            name: computed.get(name) or cached[name]
            for name in output_names(record["options"]["effects"])
        }
        timings = {**outcome.timings, "store_ms": _ms(time.perf_counter() - start)}
        return self._end(
            job_id,
            outputs,
            timings=timings,
            batch_size=outcome.batch_size,
            computed=list(computed),
        )
