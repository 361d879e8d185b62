"""Job records in Redis, the one place that reads and writes them: one JSON document per job
(``JobRecord.to_dict``), with a TTL, and a channel per job that announces its terminal state
(so a waiting request wakes at once instead of polling). Every change goes through ``update``,
atomically, and ``on_terminal`` runs once for each job that ends."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

import redis

from jobs.record import STATUSES, TERMINAL, JobRecord, ms_between, now_iso

# A change: the new record from the current one, or None to leave it as it is.
Change = Callable[[JobRecord], JobRecord | None]
OnTerminal = Callable[[JobRecord], None]

log = logging.getLogger("cutout.jobs")


def _same(record: JobRecord) -> JobRecord:
    return record


def ending(status: str, fill: Callable[[JobRecord], JobRecord] = _same) -> Change:
    """A change that ends a job unless it already ended (a cancel wins over a late result);
    ``fill`` sets what the job ends with (its outputs, its error). ``total_ms`` is the time
    from its creation."""
    if status not in TERMINAL:
        raise ValueError(f"{status!r} is not a terminal status")

    def apply(current: JobRecord) -> JobRecord | None:
        if current.ended:
            return None
        filled = fill(current)
        completed = now_iso()
        timings = {**filled.timings, "total_ms": ms_between(current.created_at, completed)}
        return replace(filled, status=status, completed_at=completed, timings=timings)

    return apply


def unless_ended(change: Callable[[JobRecord], JobRecord]) -> Change:
    """A change applied only while the job has not ended."""
    return lambda current: None if current.ended else change(current)


class JobStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "cutout",
        ttl_seconds: int = 86400,
        on_terminal: OnTerminal | None = None,
    ):
        self.redis = client
        self.prefix = prefix
        self.ttl = ttl_seconds
        # Called once per job, by whichever process made it terminal (sends its webhook).
        self.on_terminal = on_terminal

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def channel(self, job_id: str) -> str:
        """Where every change of the job is published (the new record as JSON)."""
        return f"{self.prefix}:job-events:{job_id}"

    @property
    def channel_pattern(self) -> str:
        """Every job's channel, for one subscription per process (``jobs/events.py``)."""
        return f"{self.prefix}:job-events:*"

    def create(self, record: JobRecord) -> None:
        if record.status not in STATUSES:
            raise ValueError(f"bad status {record.status!r}")
        created = self.redis.set(self._key(record.id), _encode(record), ex=self.ttl, nx=True)
        if not created:
            raise KeyError(f"job {record.id} already exists")
        if record.ended:
            self._ended(record)

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(self._key(job_id))
        return _decode(raw) if raw is not None else None  # type: ignore[arg-type]

    def get_many(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        keys = [self._key(j) for j in job_ids]
        if not keys:
            return []
        return [_decode(raw) if raw is not None else None for raw in self.redis.mget(keys)]  # type: ignore[union-attr]

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        """Atomically apply ``change`` to the current record and return the new one (the
        current one when the change left it as it was); None if the job is gone."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        pipe.reset()
                        return None
                    current = _decode(raw)  # type: ignore[arg-type]
                    updated = change(current)
                    if updated is None:
                        pipe.reset()
                        return current
                    pipe.multi()
                    encoded = _encode(updated)
                    pipe.set(key, encoded, keepttl=True)
                    # In the same transaction: a subscriber sees changes in the order written.
                    pipe.publish(self.channel(job_id), encoded)
                    ends = updated.ended and not current.ended
                    pipe.execute()
                    if ends:
                        self._ended(updated)
                    return updated
                except redis.WatchError:
                    continue

    def _ended(self, record: JobRecord) -> None:
        if self.on_terminal is None:
            return
        try:
            self.on_terminal(record)
        except Exception:  # the job's state is already safe; a failed hook must not undo it
            log.exception("on_terminal hook failed for job %s", record.id)

    def keep_for(self, job_id: str, seconds: int) -> None:
        """Make the record live at least ``seconds`` more (webhook retries outlast the TTL)."""
        key = self._key(job_id)
        if 0 <= self.redis.ttl(key) < seconds:  # type: ignore[operator]
            self.redis.expire(key, seconds)

    def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        """The record once terminal, or as it stands when ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel(job_id))  # before reading, so no event is missed
            while True:
                record = self.get(job_id)
                remaining = deadline - time.monotonic()
                if record is None or record.ended or remaining <= 0:
                    return record
                pubsub.get_message(timeout=min(remaining, 1.0))
        finally:
            pubsub.close()


def _encode(record: JobRecord) -> str:
    return json.dumps(record.to_dict())


def decode(raw: bytes | str) -> JobRecord:
    """A record as ``update`` writes and publishes it."""
    return _decode(raw)


def _decode(raw: bytes | str) -> JobRecord:
    return JobRecord.from_dict(json.loads(raw))
