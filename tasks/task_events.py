"""Celery's task events for each job of a batch, so Flower shows every job as its own task.

Flower (and any ``celery.events.state.State``) builds a task's state from the worker's task
events. Celery's default strategy sends ``task-received`` and its tracer ``task-started`` and
``task-succeeded``/``task-failed``; celery-batches bypasses both (its strategy buffers the
message, its tracer runs one task for the whole batch), so a ``cutout.segment`` job stayed
PENDING in Flower forever. Here the same events go out per message:

- ``task-received`` as the worker buffers the message (the ``task_received`` signal, on the
  consumer's own event dispatcher, as Celery's strategy sends it);
- ``task-started`` as the batch that carries the job starts;
- ``task-succeeded`` with the job's status and the batch's runtime, ``task-failed`` with
  ``JobFailed('<code>: <message>')`` (the job record's error), or ``task-revoked`` for a job
  that was canceled or gone before it ran.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, signals
from celery_batches import Batches, SimpleRequest

from jobs.record import JobError

log = logging.getLogger("cutout.segment")


class JobFailed(Exception):
    """A job that failed, as Celery records it (result backend, events); the job record says
    why, and the message repeats its code and message."""


def failure(job_id: str, error: JobError | None) -> JobFailed:
    if error is None:
        return JobFailed(job_id)
    return JobFailed(f"{error.code}: {error.message}")


@signals.task_received.connect
def _send_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    # Only batch tasks: Celery's own strategy sends this event for every other task.
    task = getattr(request, "task", None)
    eventer = getattr(sender, "event_dispatcher", None)
    if not isinstance(task, Batches) or eventer is None or not eventer.enabled:
        return
    if not task.send_events:
        return
    eventer.send(
        "task-received",
        uuid=request.id,
        name=request.name,
        args=request.argsrepr,
        kwargs=request.kwargsrepr,
        root_id=request.root_id,
        parent_id=request.parent_id,
        retries=request.request_dict.get("retries", 0),
        eta=request.eta and request.eta.isoformat(),
        expires=request.expires and request.expires.isoformat(),
    )


class BatchEvents:
    """Sends one batch's per-job events through a producer of the app's pool (the batch runs
    on a pool thread; the consumer's dispatcher belongs to the consumer's thread)."""

    def __init__(self, app: Celery, requests: Sequence[SimpleRequest]) -> None:
        self.app = app
        self.requests = requests
        self.enabled = bool(app.conf.worker_send_task_events) and bool(requests)
        self.began = time.perf_counter()

    def _send(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not self.enabled or not events:
            return
        hostname = self.requests[0].hostname
        try:
            with self.app.events.default_dispatcher(hostname=hostname) as dispatcher:
                for type_, fields in events:
                    dispatcher.send(type_, **fields)
        except Exception:  # the dashboard's view is not worth a job: never fail a batch
            log.warning("could not send %d task events", len(events), exc_info=True)

    def started(self) -> None:
        self.began = time.perf_counter()
        self._send([("task-started", {"uuid": r.id}) for r in self.requests])

    def ended(
        self,
        statuses: Mapping[str, str],
        failures: Mapping[str, JobFailed],
    ) -> None:
        """``statuses``: each request's job status; ``failures``: the failed ones' errors."""
        runtime = time.perf_counter() - self.began
        events: list[tuple[str, dict[str, Any]]] = []
        for request in self.requests:
            status = statuses[request.id]
            if status == "failed":
                exc = failures[request.id]
                events.append(("task-failed", {"uuid": request.id, "exception": repr(exc)}))
            elif status == "succeeded":
                result = repr({"job_id": request.args[0], "status": status})
                fields = {"uuid": request.id, "result": result, "runtime": runtime}
                events.append(("task-succeeded", fields))
            else:  # canceled, or the job was gone before it ran
                fields = {"uuid": request.id, "terminated": False, "expired": status == "expired"}
                events.append(("task-revoked", fields))
        self._send(events)
