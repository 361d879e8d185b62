"""Where a recorded job goes, and how jobs end so that no attached job is ever stranded.

A job whose outputs are all cached ends at once. One whose missing outputs an identical job
(its *leader*) is already computing *follows* it: it waits, queued, and is finished from the
cache when the leader succeeds. Otherwise it *leads*: it is queued for a worker, which
computes only the missing outputs.

Every end of a leader, however it comes (success, failure, cancel, a sweep after its record
expired), hands each follower on exactly once (``settle``):
- the leader succeeded: the follower is finished from the cache (or, for a leader whose
  outputs were not cached, from a reduced model input under load, with the leader's outputs);
- the leader failed on the image itself (``invalid_image``): the follower, which sent the
  same bytes, fails the same way;
- anything else (a lost worker, a storage fault, a cancel): the follower is dispatched anew,
  with its own staged input, and so leads or follows again.
A follower keeps its staged input until it ends, for exactly that last case; a canceled
follower leaves its leader's list. Every job ends through ``JobStore.update`` or ``create``,
so the job store's ``on_terminal`` hook (webhook, metrics) runs once per job whichever path
ended it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from jobs.queue import Enqueue
from jobs.record import JobError, JobRecord
from jobs.store import JobStore, ending, unless_ended
from storage.base import ObjectStore
from storage.keys import background_staging_key, staging_key
from storage.result_cache import Claim, ResultCache, StoredOutput, output_names

log = logging.getLogger("cutout.dispatch")

Fill = Callable[[JobRecord], JobRecord]

# Failures that depend only on the uploaded bytes and options, which followers share.
SHARED_FAILURES = frozenset({"invalid_image"})


class Dispatcher:
    def __init__(
        self, jobs: JobStore, cache: ResultCache, store: ObjectStore, enqueue: Enqueue
    ) -> None:
        self.jobs = jobs
        self.cache = cache
        self.store = store
        self.enqueue = enqueue

    def dispatch(self, record: JobRecord) -> tuple[Claim, JobRecord]:
        """Answer, attach or queue a recorded job whose input is staged; returns the claim and
        the record as it now stands. If queueing fails, the job is failed and the error raised.
        """
        names = output_names(record.options.effects)
        claim = self.cache.claim(record.content_key, record.id, names)
        if claim.outcome == "hit":
            finished = self.complete_from_cache(record, "hit")
            return (claim, finished) if finished else self.dispatch(record)
        if claim.outcome == "follow":
            joined = unless_ended(lambda r: replace(r, cache="joined", joined_job=claim.leader))
            return claim, self.jobs.update(record.id, joined) or record
        state = "miss" if len(claim.missing) == len(names) else "partial"
        # A follower handed over leads now.
        leads = unless_ended(lambda r: replace(r, cache=state, joined_job=None))
        current = self.jobs.update(record.id, leads) or record
        try:
            self.enqueue(record.id)
        except Exception as exc:
            self.fail(record.id, "enqueue_failed", f"could not queue the job: {exc}")
            raise
        return claim, current

    def complete_from_cache(self, record: JobRecord, how: str) -> JobRecord | None:
        """End the job with its outputs from the cache and return it; None (and nothing done)
        if the cache no longer holds them all."""
        names = output_names(record.options.effects)
        outputs = self.cache.lookup(record.content_key, names)
        if len(outputs) < len(names):
            return None
        return self.finish(record.id, outputs, lambda r: replace(r, cache=how)) or record

    def _complete_from_leader(self, record: JobRecord, leader: JobRecord) -> JobRecord | None:
        """End a follower with its leader's own outputs, when they cover what it asked for;
        None (and nothing done) otherwise."""
        names = output_names(record.options.effects)
        if not all(name in leader.outputs for name in names):
            return None
        taken = {name: leader.outputs[name] for name in names}

        def joined(r: JobRecord) -> JobRecord:
            return replace(r, cache="joined", model_input=leader.model_input)

        return self.finish(record.id, taken, joined) or record

    def finish(
        self, job_id: str, outputs: Mapping[str, StoredOutput], fill: Fill | None = None
    ) -> JobRecord | None:
        """End a job as succeeded with ``outputs`` (and whatever else ``fill`` sets), drop its
        staged input, hand over its followers; None if the job is gone."""

        def succeeded(r: JobRecord) -> JobRecord:
            with_outputs = replace(r, outputs=dict(outputs))
            return fill(with_outputs) if fill is not None else with_outputs

        record = self.jobs.update(job_id, ending("succeeded", succeeded))
        self._after_end(job_id, record)
        return record

    def fail(self, job_id: str, code: str, message: str) -> str:
        """End a job as failed (unless it already ended), drop its staged input, hand over
        its followers; returns the job's status afterwards."""
        error = JobError(code, message)
        record = self.jobs.update(job_id, ending("failed", lambda r: replace(r, error=error)))
        self._after_end(job_id, record)
        return record.status if record else "failed"

    def _after_end(self, job_id: str, record: JobRecord | None) -> None:
        try:
            self.store.delete(staging_key(job_id))
            if record is None or record.options.finishing.background.kind == "image":
                self.store.delete(background_staging_key(job_id))
        except Exception:  # storage down: the cleanup sweeps staged inputs left behind
            log.warning("could not drop the staged inputs of job %s", job_id, exc_info=True)
        if record is not None:  # followers are handed over whatever the storage says
            self.settle(record)

    def canceled(self, record: JobRecord) -> None:
        """After a cancel: a follower leaves its leader's list; a leader hands its followers
        over (they lead or follow anew, with their own staged inputs)."""
        if record.joined_job:
            self.cache.detach(record.content_key, record.joined_job, record.id)
        self.settle(record)

    def settle(self, leader: JobRecord) -> None:
        """Hand over the followers of a job that has ended (any terminal status); a no-op for
        a job that led nothing or was settled already."""
        self._hand_over(leader.content_key, leader.id, leader)

    def _hand_over(self, content_key: str, leader_id: str, leader: JobRecord | None) -> None:
        """``leader`` None: its record expired."""
        for job_id in self.cache.release(content_key, leader_id):
            try:
                self._settle_follower(job_id, leader_id, leader)
            except Exception:  # one follower's trouble never strands the others
                log.exception("could not settle job %s after job %s", job_id, leader_id)

    def _settle_follower(self, job_id: str, leader_id: str, leader: JobRecord | None) -> None:
        record = self.jobs.get(job_id)
        if record is None or record.ended:
            return
        status = leader.status if leader is not None else "expired"
        if (
            leader is not None
            and status == "succeeded"
            and (
                self.complete_from_cache(record, "joined")
                or self._complete_from_leader(record, leader)
            )
        ):
            return
        error = leader.error if leader is not None else None
        if status == "failed" and error is not None and error.code in SHARED_FAILURES:
            self.fail(job_id, error.code, error.message)
            return
        log.info("job %s runs on its own: job %s ended %s", job_id, leader_id, status)
        self.dispatch(record)

    def sweep(self, older_than: float) -> int:
        """Settle leaders claimed more than ``older_than`` seconds ago that ended without
        handing over (their process died in between) or whose record expired; returns how
        many. A leader still queued or running is left alone: Celery redelivers its message
        if its worker died."""
        settled = 0
        for content_key, job_id in self.cache.claims_older_than(older_than):
            record = self.jobs.get(job_id)
            if record is not None and not record.ended:
                continue
            self._hand_over(content_key, job_id, record)
            settled += 1
        return settled
