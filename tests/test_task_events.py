"""Each batched job's task events, as Flower's state (``celery.events.state.State``) reads them.

The end-to-end check through a real worker and Flower is in test_service_e2e.py; here the
mapping of job statuses to task states, without a broker."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from celery.events.state import State
from celery_batches import SimpleRequest

from jobs.record import JobError
from tasks.task_events import BatchEvents, failure


class StateDispatcher:
    """Stands in for Celery's event dispatcher: every event goes straight into ``state``,
    stamped as a real dispatcher stamps it."""

    def __init__(self, state: State, hostname: str) -> None:
        self.state = state
        self.hostname = hostname
        self.clock = itertools.count(1)

    def send(self, type_: str, **fields: Any) -> None:
        now = time.time()
        event = {"type": type_, "hostname": self.hostname, "timestamp": now,
                 "local_received": now, "clock": next(self.clock), "pid": 1, **fields}  # fmt: skip
        self.state.event(event)


def request(job_id: str) -> SimpleRequest:
    return SimpleRequest(job_id, "cutout.segment", (job_id,), {}, {}, "gpu@test", False,
                         None, None, {})  # fmt: skip


def test_each_job_of_a_batch_ends_in_its_own_state() -> None:
    app = Celery("events-test", set_as_current=False)
    app.conf.worker_send_task_events = True
    state = State()
    dispatcher = StateDispatcher(state, "gpu@test")

    @contextmanager
    def default_dispatcher(hostname: str | None = None) -> Iterator[StateDispatcher]:
        assert hostname == "gpu@test"
        yield dispatcher

    app.events.default_dispatcher = default_dispatcher  # type: ignore[method-assign]
    requests = [request(job_id) for job_id in ("ok", "bad", "gone")]
    for r in requests:  # as the consumer sends it
        dispatcher.send("task-received", uuid=r.id, name=r.name)
    events = BatchEvents(app, requests)
    events.started()
    assert {state.tasks[r.id].state for r in requests} == {"STARTED"}
    bad = failure("bad", JobError("invalid_image", "cannot decode"))
    events.ended({"ok": "succeeded", "bad": "failed", "gone": "expired"}, {"bad": bad})

    ok, failed, gone = (state.tasks[job_id] for job_id in ("ok", "bad", "gone"))
    assert ok.state == "SUCCESS" and ok.runtime >= 0 and ok.name == "cutout.segment"
    assert ok.received <= ok.started <= ok.succeeded
    assert failed.state == "FAILURE"
    assert failed.exception == "JobFailed('invalid_image: cannot decode')"
    assert gone.state == "REVOKED"
    assert ok.worker.hostname == "gpu@test"


def test_events_off_sends_nothing() -> None:
    app = Celery("events-off", set_as_current=False)
    app.conf.worker_send_task_events = False
    opened: list[str | None] = []

    @contextmanager
    def record(hostname: str | None = None) -> Iterator[StateDispatcher]:
        opened.append(hostname)
        yield StateDispatcher(State(), "gpu@test")

    app.events.default_dispatcher = record  # type: ignore[method-assign]
    events = BatchEvents(app, [request("a")])
    events.started()
    events.ended({"a": "succeeded"}, {})
    assert opened == []
