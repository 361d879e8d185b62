"""What happens once when a job ends, in whichever process ends it.

A job ends in a worker (its batch ran, or it was a follower handed over when its leader
ended), in the ``io`` worker (the cleanup sweep hands over followers of leaders that died) or
in the API (a cache hit answered at submit, a cancel, a job the queue refused, followers of a
canceled leader). ``JobStore`` calls its ``on_terminal`` hook exactly once per job, in that
process: this hook counts the job's end (``cutout_jobs_total``, ``cutout_job_duration_seconds``,
``cutout_errors_total``), writes its terminal log line and queues its webhook.
"""

from __future__ import annotations

from jobs.queue import Enqueue
from jobs.record import JobRecord
from jobs.store import OnTerminal
from observability import metrics
from observability.logs import log_job_stage


def job_end_hook(send_webhook: Enqueue) -> OnTerminal:
    """The ``JobStore.on_terminal`` hook; ``send_webhook(job_id)`` queues a first delivery."""

    def ended(record: JobRecord) -> None:
        code = record.error.code if record.error else None
        metrics.record_job_end(record.status, record.timings, code)
        # batch_id: the batch the job ran in, if it ran in one (not a hit or a follower).
        log_job_stage(record.status, record.id, record.batch_id or "", record.timings, code)
        if record.webhook is not None:
            send_webhook(record.id)

    return ended
