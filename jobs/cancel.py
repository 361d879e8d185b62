"""Canceling a job.

A queued job becomes ``canceled`` and never runs (the worker skips ended jobs); its staged
input goes at once. A job already on a worker finishes its batch, but the runner's ending
update refuses to overwrite ``canceled``, so its outputs never reach the record. Jobs attached
to a canceled job (identical uploads waiting for its outputs) are handed over at once: they are
queued on their own, or finish from the cache; a canceled job that was itself attached leaves
its leader's list. A job that had already ended is left as it was.
"""

from __future__ import annotations

from jobs.record import TERMINAL, JobRecord
from jobs.services import JobServices
from jobs.store import ending
from storage.keys import background_staging_key, staging_key


def cancel(svc: JobServices, job_id: str) -> tuple[JobRecord | None, str | None]:
    """The record afterwards (None: no such job) and the status it had just before."""
    before = ""
    end = ending("canceled")

    def apply(current: JobRecord) -> JobRecord | None:
        nonlocal before
        before = current.status  # the last call is the one that committed
        return end(current)

    record = svc.jobs.update(job_id, apply)
    if record is None:
        return None, None
    if before == "queued":
        svc.store.delete(staging_key(job_id))  # no worker will read it now
        if record.options.finishing.background.kind == "image":
            svc.store.delete(background_staging_key(job_id))
    if before not in TERMINAL:  # this call canceled it
        svc.dispatcher.canceled(record)
    return record, before
