"""Running a batch of queued jobs: records and staged inputs in, outputs and records out.

No Celery here: the task hands over job ids and gets back each job's terminal status. Each
job computes only the outputs the result cache lacks when it starts; how a job ends (and what
becomes of identical jobs attached to it) is the dispatcher's business, and what is recorded
when it ends (metrics, the terminal log line, the webhook) the job store's hook's
(``jobs/end_hook.py``). Several batches may run at once (one per thread of the worker's pool);
the pipeline takes them through the device one at a time.

Under load (``jobs/adaptive.py``) a batch may run at a reduced model input; a job does only if
nothing it needs is cached (a cached mask would not match effects cut from a new one). Its
outputs are stored under a content key of their own (the job's plus the input size) and never
enter the result cache, so the cache only ever answers with full-quality results; jobs attached
to it get its outputs all the same. The record's ``model_input`` says which input a job got.
A job that asked for a preview has it stored and recorded (``preview``) while it still runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

from jobs.adaptive import AdaptiveQuality
from jobs.dispatch import Dispatcher
from jobs.record import JobRecord, ms_between, now_iso
from jobs.store import unless_ended
from jobs.work import Batch, Encoded, Outcome, Processor, Work
from observability import metrics
from observability.cost import BusyClock, CostMeter
from observability.logs import log_job_stage
from storage.keys import background_staging_key, content_key, result_key, staging_key
from storage.result_cache import StoredOutput, output_names
from storage.transient import RetryWindow, StorageUnavailable

log = logging.getLogger("cutout.jobs")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@dataclass(frozen=True)
class Started:
    record: JobRecord
    cached: Mapping[str, StoredOutput]  # the outputs it needs that were cached when it started
    work: Work  # asks the pipeline for the missing effects only


class JobRunner:
    def __init__(
        self,
        dispatcher: Dispatcher,
        processor: Processor,
        cost: CostMeter | None = None,
        quality: AdaptiveQuality | None = None,
        storage_retry_for: float = 0.0,
    ) -> None:
        self.dispatcher = dispatcher
        self.jobs = dispatcher.jobs
        self.store = dispatcher.store
        self.cache = dispatcher.cache
        self.processor = processor
        self.cost = cost
        self.quality = quality
        self.busy = BusyClock()
        # Transient storage errors are waited out this long (a batch's jobs share the wait).
        self.storage_retry_for = storage_retry_for

    def run(self, job_ids: Sequence[str], batch_id: str = "") -> dict[str, str]:
        """Process the jobs; returns each job's status afterwards (jobs gone are left out)."""
        busy = self.busy.start()
        statuses: dict[str, str] = {}
        processed = 0
        try:
            processed = self._run(job_ids, batch_id, statuses)
        finally:
            busy += self.busy.stop()
            metrics.record_batch(processed, busy)
            if self.cost is not None:
                self.cost.add(processed, busy)
        return statuses

    def _run(self, job_ids: Sequence[str], batch_id: str, statuses: dict[str, str]) -> int:
        """Fills in ``statuses``; returns how many jobs went through the pipeline."""
        began = time.perf_counter()
        reduced = self.quality.model_input() if self.quality is not None else None
        started: dict[str, Started] = {}
        unique = list(dict.fromkeys(job_ids))  # a redelivered duplicate runs once
        # What a job is told as it starts (its "processing" event); its end records the facts.
        plan = (len(unique), reduced or self.processor.input_size)
        for job_id in unique:
            prepared = self._prepare(job_id, batch_id, reduced, plan)
            if isinstance(prepared, Started):
                started[job_id] = prepared
            elif prepared is not None:
                statuses[job_id] = prepared
        if not started:
            return 0

        def publish(job_id: str, previews: Sequence[Encoded]) -> None:
            self._publish_preview(started[job_id], previews, batch_id)

        result = self.processor.process([s.work for s in started.values()], publish)
        stored_from = time.time()
        window = RetryWindow(self.storage_retry_for)
        for outcome in result.outcomes:
            log_job_stage(
                "processed",
                outcome.job_id,
                batch_id,
                outcome.timings,
                batch_size=outcome.batch_size,
                model_input=outcome.model_input or None,
                error_code=outcome.error_code,
            )
            metrics.record_job_stages(outcome.timings)
            statuses[outcome.job_id] = self._finish(started[outcome.job_id], outcome, window)
        spans = {**result.spans, "store": (round(stored_from, 3), round(time.time(), 3))}
        self._record_batch(result, spans, time.perf_counter() - began, batch_id)
        return len(result.outcomes)

    def _record_batch(
        self,
        result: Batch,
        spans: Mapping[str, tuple[float, float]],
        seconds: float,
        batch_id: str,
    ) -> None:
        # The engine that ran the batch: the processor's may have switched since.
        engine = result.model_calls[0].engine if result.model_calls else self.processor.engine
        for call in result.model_calls:
            metrics.record_model_call(call.engine, call.seconds, call.images)
        metrics.REDUCED_INPUT.inc(sum(1 for o in result.outcomes if self._reduced(o.model_input)))
        calls = [
            {"images": c.images, "input": c.input_size, "ms": _ms(c.seconds)}
            for c in result.model_calls
        ]
        log.info(
            "batch of %d done in %.3fs",
            len(result.outcomes),
            seconds,
            extra={
                "stage": "batch",
                "batch_id": batch_id,
                "jobs": len(result.outcomes),
                "job_ids": [o.job_id for o in result.outcomes],
                "engine": engine,
                "model_calls": calls,
                "spans": dict(spans),  # stage → [start, end], epoch seconds
                "timings": {
                    "inference_ms": _ms(sum(c.seconds for c in result.model_calls)),
                    "batch_ms": _ms(seconds),
                    # The device lock's hold next to the device work in it (CUDA events).
                    "lock_held_ms": result.lock_held_ms,
                    "device_ms": result.device_ms,
                },
            },
        )

    def _prepare(
        self, job_id: str, batch_id: str, reduced: int | None, plan: tuple[int, int]
    ) -> Started | str | None:
        """Start the job and load what it needs to compute; or end it at once and return its
        status (None: the job is gone). ``plan``: the batch's size and model input."""
        record = self._start(job_id, batch_id, plan)
        if record is None:
            return None
        if record.status != "processing":
            self.dispatcher.settle(record)  # a canceled leader's followers run on their own
            return record.status
        options = record.options
        names = output_names(options.effects)
        cached = self.cache.lookup(record.content_key, names)
        if len(cached) == len(names):  # computed meanwhile (or before a redelivery)

            def ran_nothing(r: JobRecord) -> JobRecord:
                return replace(r, computed=(), batch_size=None, model_input=None)

            return self._end(job_id, cached, ran_nothing)
        background = None
        try:
            data = self.store.open(staging_key(job_id))
            if options.finishing.background.kind == "image":
                background = self.store.open(background_staging_key(job_id))
        except FileNotFoundError:
            return self.fail(job_id, "input_missing", "the staged upload is gone")
        work = Work(
            job_id,
            data,
            tuple(e for e in options.effects if e not in cached),
            options.max_size,
            options.format,
            model_input=None if cached else reduced,  # a cached mask must match new effects
            preview=options.preview,
            finishing=options.finishing,
            background=background,
        )
        return Started(record, cached, work)

    def _start(self, job_id: str, batch_id: str, plan: tuple[int, int]) -> JobRecord | None:
        batch_size, model_input = plan

        def begin(current: JobRecord) -> JobRecord | None:
            if current.ended:
                return None  # canceled before it ran, or already done (a redelivery)
            started = now_iso()
            queue_ms = ms_between(current.created_at, started)
            return replace(
                current,
                status="processing",
                started_at=started,
                batch_id=batch_id,
                batch_size=batch_size,
                model_input=model_input,
                timings={**current.timings, "queue_ms": queue_ms},
            )

        record = self.jobs.update(job_id, begin)
        if record is None:
            log.warning("job %s expired before it ran", job_id)
        elif record.status == "processing":
            log_job_stage("started", job_id, batch_id, {"queue_ms": record.timings["queue_ms"]})
        return record

    def fail(self, job_id: str, code: str, message: str) -> str:
        """End a job as failed (unless it already ended) and drop its staged input."""
        return self.dispatcher.fail(job_id, code, message)

    def _end(
        self,
        job_id: str,
        outputs: Mapping[str, StoredOutput],
        fill: Callable[[JobRecord], JobRecord],
    ) -> str:
        record = self.dispatcher.finish(job_id, outputs, fill)
        return record.status if record else "succeeded"

    def _reduced(self, model_input: int | None) -> bool:
        return bool(model_input) and model_input != self.processor.input_size

    def _results_key(self, record: JobRecord, model_input: int | None) -> str:
        """Where the job's outputs go: under its content key, or, at a reduced input, under a
        key of their own, so they never stand in for the full-quality outputs."""
        if self._reduced(model_input):
            return content_key([record.content_key, f"model_input={model_input}"])
        return record.content_key

    def _save(
        self, key: str, out: Encoded, foreground: tuple[int, int, int, int] | None = None
    ) -> StoredOutput:
        self.store.save(key, out.data, out.content_type, immutable=True)
        size = len(out.data)
        return StoredOutput(key, out.content_type, out.width, out.height, size, foreground)

    def _publish_preview(
        self, started: Started, previews: Sequence[Encoded], batch_id: str
    ) -> None:
        """Store the previews and put them on the record while the job still runs."""
        record = started.record
        base = self._results_key(record, started.work.model_input)
        saved = {
            out.name: self._save(result_key(base, f"preview-{out.name}", out.extension), out)
            for out in previews
        }
        self.jobs.update(record.id, unless_ended(lambda r: replace(r, preview=saved)))
        log_job_stage("preview", record.id, batch_id, {}, outputs=list(saved))

    def _finish(self, started: Started, outcome: Outcome, window: RetryWindow) -> str:
        record, cached = started.record, started.cached
        job_id = record.id
        if not outcome.ok:
            return self.fail(job_id, outcome.error_code or "failed", outcome.error_message or "")
        start = time.perf_counter()
        computed: dict[str, StoredOutput] = {}
        base = self._results_key(record, outcome.model_input)
        try:
            for out in outcome.outputs:
                if out.name in cached:
                    continue  # never overwrite what clients may already hold (the mask)
                key = result_key(base, out.name, out.extension)
                # The encoded outputs are kept in memory: a retry stores them, never recomputes.
                save = partial(self._save, key, out, outcome.foreground)
                computed[out.name] = window.call(save, f"storing {key}")
            if not self._reduced(outcome.model_input):
                self.cache.store(record.content_key, computed)
        except StorageUnavailable as exc:
            log.error("storing outputs of job %s: %s", job_id, exc, extra={"job_id": job_id})
            return self.fail(job_id, "storage_unavailable", f"could not store the outputs: {exc}")
        except Exception as exc:
            log.exception("storing outputs of job %s failed", job_id, extra={"job_id": job_id})
            return self.fail(job_id, "storage_error", f"could not store the outputs: {exc}")
        names = output_names(record.options.effects)
        outputs = {name: computed.get(name) or cached[name] for name in names}
        timings = {**outcome.timings, "store_ms": _ms(time.perf_counter() - start)}

        def ran(r: JobRecord) -> JobRecord:
            return replace(
                r,
                timings={**r.timings, **timings},
                batch_size=outcome.batch_size,
                model_input=outcome.model_input,
                computed=tuple(computed),
            )

        return self._end(job_id, outputs, ran)
