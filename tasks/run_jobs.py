"""Running a batch of queued jobs: records and staged inputs in, outputs and records out.

No Celery here: the task hands over job ids and gets back each job's terminal status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from storage.base import ObjectStore
from storage.jobs import TERMINAL, JobStore, now_iso, parse_iso
from storage.keys import result_key, staging_key
from tasks import metrics
from tasks.cost import CostMeter
from workers.pipeline import JobInput, JobOutcome, Pipeline

log = logging.getLogger("cutout.jobs")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class JobRunner:
    def __init__(
        self,
        jobs: JobStore,
        store: ObjectStore,
        pipeline: Pipeline,
        cost: CostMeter | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.pipeline = pipeline
        self.cost = cost

    def run(self, job_ids: Sequence[str], batch_id: str = "") -> dict[str, str]:
        """Process the jobs; returns each job's status afterwards (jobs gone are left out)."""
        started = time.perf_counter()
        statuses: dict[str, str] = {}
        inputs: list[JobInput] = []
        records: dict[str, dict[str, Any]] = {}
        for job_id in dict.fromkeys(job_ids):  # a redelivered duplicate runs once
            record = self._start(job_id, batch_id)
            if record is None:
                continue
            if record["status"] != "processing":
                statuses[job_id] = record["status"]
                continue
            try:
                data = self.store.open(staging_key(job_id))
            except FileNotFoundError:
                statuses[job_id] = self.fail(
                    job_id, "input_missing", "the staged upload is gone", batch_id
                )
                continue
            options = record["options"]
            inputs.append(
                JobInput(
                    job_id, data, tuple(options["effects"]), options["max_size"], options["format"]
                )
            )
            records[job_id] = record
        if inputs:
            outcomes = self.pipeline.run(inputs)
            for outcome in outcomes:
                _log_stage(
                    "processed",
                    outcome.job_id,
                    batch_id,
                    outcome.timings,
                    batch_size=outcome.batch_size,
                    error_code=outcome.error_code,
                )
                metrics.record_job_stages(outcome.timings)
                statuses[outcome.job_id] = self._finish(records[outcome.job_id], outcome, batch_id)
            self._record_batch(outcomes, time.perf_counter() - started, batch_id)
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

    def _start(self, job_id: str, batch_id: str = "") -> dict[str, Any] | None:
        def begin(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["status"] in TERMINAL:
                return None  # canceled before it ran, or already done (a redelivery)
            started = now_iso()
            queue_ms = _ms(parse_iso(started) - parse_iso(current["created_at"]))
            return {
                "status": "processing",
                "started_at": started,
                "timings": {**current.get("timings", {}), "queue_ms": queue_ms},
            }

        record = self.jobs.update(job_id, begin)
        if record is None:
            log.warning("job %s expired before it ran", job_id)
        elif record["status"] == "processing":
            _log_stage("started", job_id, batch_id, {"queue_ms": record["timings"]["queue_ms"]})
        return record

    def fail(self, job_id: str, code: str, message: str, batch_id: str = "") -> str:
        """End a job as failed (unless it already ended) and drop its staged input."""
        record = self._end(
            job_id,
            _Terminal("failed", error={"code": code, "message": message}),
            batch_id,
        )
        self.store.delete(staging_key(job_id))
        return record["status"] if record else "failed"

    def _end(self, job_id: str, end: _Terminal, batch_id: str) -> dict[str, Any] | None:
        record = self.jobs.update(job_id, end)
        if record is None or not end.applied:
            return record  # gone, or it had already ended: counted then
        code = (record.get("error") or {}).get("code")
        metrics.record_job_end(record["status"], record["timings"], code)
        _log_stage(record["status"], job_id, batch_id, record["timings"], error_code=code)
        return record

    def _finish(self, record: dict[str, Any], outcome: JobOutcome, batch_id: str = "") -> str:
        job_id = record["id"]
        if not outcome.ok:
            return self.fail(
                job_id, outcome.error_code or "failed", outcome.error_message or "", batch_id
            )
        start = time.perf_counter()
        outputs: dict[str, dict[str, Any]] = {}
        try:
            for out in outcome.outputs:
                key = result_key(record["content_key"], out.name, out.extension)
                self.store.save(key, out.data, out.content_type, immutable=True)
                outputs[out.name] = {
                    "key": key,
                    "content_type": out.content_type,
                    "width": out.width,
                    "height": out.height,
                    "bytes": len(out.data),
                }
        except Exception as exc:
            log.exception("storing outputs of job %s failed", job_id, extra={"job_id": job_id})
            return self.fail(
                job_id, "storage_error", f"could not store the outputs: {exc}", batch_id
            )
        timings = {**outcome.timings, "store_ms": _ms(time.perf_counter() - start)}
        updated = self._end(
            job_id,
            _Terminal("succeeded", outputs=outputs, timings=timings, batch_size=outcome.batch_size),
            batch_id,
        )
        self.store.delete(staging_key(job_id))
        return updated["status"] if updated else "succeeded"


class _Terminal:
    """An update that ends a job unless it already ended (a cancel wins over a late result).

    ``applied`` says whether the last application ended it (the job store may re-apply an
    update whose record changed under it)."""

    def __init__(self, status: str, **fields: Any) -> None:
        self.status = status
        self.timings = fields.pop("timings", {})
        self.fields = fields
        self.applied = False

    def __call__(self, current: dict[str, Any]) -> dict[str, Any] | None:
        self.applied = current["status"] not in TERMINAL
        if not self.applied:
            return None
        completed = now_iso()
        timings = {**current.get("timings", {}), **self.timings}
        timings["total_ms"] = _ms(parse_iso(completed) - parse_iso(current["created_at"]))
        return {**self.fields, "status": self.status, "completed_at": completed, "timings": timings}


def _log_stage(
    stage: str,
    job_id: str,
    batch_id: str,
    timings: Mapping[str, Any],
    error_code: str | None = None,
    **fields: Any,
) -> None:
    """One JSON line per job stage (see tasks/logs.py); failures at WARNING."""
    extra = {"stage": stage, "job_id": job_id, "batch_id": batch_id, "timings": dict(timings)}
    if error_code:
        extra["error_code"] = error_code
    level = logging.WARNING if error_code else logging.INFO
    log.log(level, "job %s %s", job_id, stage, extra={**extra, **fields})
