"""Periodic housekeeping: staged inputs nobody will read, and leaders that never handed over.

Job records expire by themselves (a Redis TTL); what they leave behind is swept here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from jobs.dispatch import Dispatcher
from jobs.store import JobStore
from storage.base import ObjectStore

STAGING_PREFIX = "staging/"


@dataclass(frozen=True)
class CleanupReport:
    staged_inputs_removed: int
    leaders_settled: int


def remove_stale_staging(
    store: ObjectStore, jobs: JobStore, grace_seconds: float, now: float | None = None
) -> int:
    """Delete staged inputs older than ``grace_seconds`` whose job has ended or expired (or
    that belong to no job, like a crashed start-up probe); a queued job's input stays."""
    cutoff = (time.time() if now is None else now) - grace_seconds
    stale = [obj.key for obj in store.iter_objects(STAGING_PREFIX) if obj.modified < cutoff]
    # "<job id>" or "<job id>.background" (its background image): the job's id either way.
    job_ids = [key.removeprefix(STAGING_PREFIX).split(".", 1)[0] for key in stale]
    removed = 0
    for key, record in zip(stale, jobs.get_many(job_ids), strict=True):
        if record is None or record.ended:
            store.delete(key)
            removed += 1
    return removed


def clean_up(dispatcher: Dispatcher, grace_seconds: float) -> CleanupReport:
    return CleanupReport(
        staged_inputs_removed=remove_stale_staging(
            dispatcher.store, dispatcher.jobs, grace_seconds
        ),
        leaders_settled=dispatcher.sweep(grace_seconds),
    )
