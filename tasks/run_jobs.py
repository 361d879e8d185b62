"""Running a batch of queued jobs: records and staged inputs in, outputs and records out.

No Celery here: the task hands over job ids and gets back each job's terminal status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from storage.base import ObjectStore
from storage.jobs import TERMINAL, JobStore, now_iso, parse_iso
from storage.keys import result_key, staging_key
from workers.pipeline import JobInput, JobOutcome, Pipeline

log = logging.getLogger("cutout.jobs")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class JobRunner:
    def __init__(self, jobs: JobStore, store: ObjectStore, pipeline: Pipeline) -> None:
        self.jobs = jobs
        self.store = store
        self.pipeline = pipeline

    def run(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Process the jobs; returns each job's status afterwards (jobs gone are left out)."""
        statuses: dict[str, str] = {}
        inputs: list[JobInput] = []
        records: dict[str, dict[str, Any]] = {}
        for job_id in dict.fromkeys(job_ids):  # a redelivered duplicate runs once
            record = self._start(job_id)
            if record is None:
                continue
            if record["status"] != "processing":
                statuses[job_id] = record["status"]
                continue
            try:
                data = self.store.open(staging_key(job_id))
            except FileNotFoundError:
                statuses[job_id] = self.fail(job_id, "input_missing", "the staged upload is gone")
                continue
            options = record["options"]
            inputs.append(
                JobInput(
                    job_id, data, tuple(options["effects"]), options["max_size"], options["format"]
                )
            )
            records[job_id] = record
        if inputs:
            for outcome in self.pipeline.run(inputs):
                statuses[outcome.job_id] = self._finish(records[outcome.job_id], outcome)
        return statuses

    def _start(self, job_id: str) -> dict[str, Any] | None:
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
        return record

    def fail(self, job_id: str, code: str, message: str) -> str:
        """End a job as failed (unless it already ended) and drop its staged input."""
        record = self.jobs.update(
            job_id, _terminal("failed", error={"code": code, "message": message})
        )
        self.store.delete(staging_key(job_id))
        return record["status"] if record else "failed"

    def _finish(self, record: dict[str, Any], outcome: JobOutcome) -> str:
        job_id = record["id"]
        if not outcome.ok:
            return self.fail(job_id, outcome.error_code or "failed", outcome.error_message or "")
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
            log.exception("storing outputs of job %s failed", job_id)
            return self.fail(job_id, "storage_error", f"could not store the outputs: {exc}")
        timings = {**outcome.timings, "store_ms": _ms(time.perf_counter() - start)}
        updated = self.jobs.update(
            job_id,
            _terminal("succeeded", outputs=outputs, timings=timings, batch_size=outcome.batch_size),
        )
        self.store.delete(staging_key(job_id))
        return updated["status"] if updated else "succeeded"


def _terminal(status: str, **fields: Any):  # type: ignore[no-untyped-def]
    """An update that ends a job unless it already ended (a cancel wins over a late result)."""

    new_timings = fields.pop("timings", {})

    def apply(current: dict[str, Any]) -> dict[str, Any] | None:
        if current["status"] in TERMINAL:
            return None
        completed = now_iso()
        timings = {**current.get("timings", {}), **new_timings}
        timings["total_ms"] = _ms(parse_iso(completed) - parse_iso(current["created_at"]))
        return {**fields, "status": status, "completed_at": completed, "timings": timings}

    return apply
