"""Job records in Redis: one JSON document per job, with a TTL, and a channel per job that
announces its terminal state (so a waiting request wakes at once instead of polling)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
STATUSES = frozenset({"queued", "processing"}) | TERMINAL

Record = dict[str, Any]
OnTerminal = Callable[[Record], None]

log = logging.getLogger("cutout.jobs")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms_between(start_iso: str, end_iso: str) -> float:
    return round((parse_iso(end_iso) - parse_iso(start_iso)) * 1000, 2)


def ending(status: str, **fields: Any) -> Callable[[Record], Record | None]:
    """An update that ends a job unless it already ended (a cancel wins over a late result)."""
    if status not in TERMINAL:
        raise ValueError(f"{status!r} is not a terminal status")
    new_timings = fields.pop("timings", {})

    def apply(current: Record) -> Record | None:
        if current["status"] in TERMINAL:
            return None
        completed = now_iso()
        timings = {**current.get("timings", {}), **new_timings}
        timings["total_ms"] = ms_between(current["created_at"], completed)
        return {**fields, "status": status, "completed_at": completed, "timings": timings}

    return apply


def unless_ended(changes: Record) -> Callable[[Record], Record | None]:
    """An update that merges ``changes`` only while the job has not ended."""
    return lambda current: None if current["status"] in TERMINAL else changes


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

    def _channel(self, job_id: str) -> str:
        return f"{self.prefix}:job-events:{job_id}"

    def create(self, record: Record) -> None:
        if record.get("status") not in STATUSES:
            raise ValueError(f"bad status {record.get('status')!r}")
        created = self.redis.set(self._key(record["id"]), json.dumps(record), ex=self.ttl, nx=True)
        if not created:
            raise KeyError(f"job {record['id']} already exists")
        if record["status"] in TERMINAL:
            self._ended(record)

    def get(self, job_id: str) -> Record | None:
        raw = self.redis.get(self._key(job_id))
        return json.loads(raw) if raw is not None else None

    def get_many(self, job_ids: Iterable[str]) -> list[Record | None]:
        keys = [self._key(j) for j in job_ids]
        return (
            [json.loads(r) if r is not None else None for r in self.redis.mget(keys)]
            if keys
            else []
        )

    def update(
        self,
        job_id: str,
        changes: Record | Callable[[Record], Record | None],
    ) -> Record | None:
        """Atomically merge ``changes`` (or apply a function of the current record, which may
        return None to leave it as it is) and return the new record; None if the job is gone."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        pipe.reset()
                        return None
                    current = json.loads(raw)
                    delta = changes(current) if callable(changes) else changes
                    if not delta:
                        pipe.reset()
                        return current
                    updated = {**current, **delta}
                    pipe.multi()
                    pipe.set(key, json.dumps(updated), keepttl=True)
                    ends = updated["status"] in TERMINAL and current["status"] not in TERMINAL
                    if ends:
                        pipe.publish(self._channel(job_id), updated["status"])
                    pipe.execute()
                    if ends:
                        self._ended(updated)
                    return updated
                except redis.WatchError:
                    continue

    def _ended(self, record: Record) -> None:
        if self.on_terminal is None:
            return
        try:
            self.on_terminal(record)
        except Exception:  # the job's state is already safe; a failed hook must not undo it
            log.exception("on_terminal hook failed for job %s", record["id"])

    def keep_for(self, job_id: str, seconds: int) -> None:
        """Make the record live at least ``seconds`` more (webhook retries outlast the TTL)."""
        key = self._key(job_id)
        if 0 <= self.redis.ttl(key) < seconds:  # type: ignore[operator]
            self.redis.expire(key, seconds)

    def wait(self, job_id: str, timeout: float) -> Record | None:
        """The record once terminal, or as it stands when ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel(job_id))  # before reading, so no event is missed
            while True:
                record = self.get(job_id)
                remaining = deadline - time.monotonic()
                if record is None or record["status"] in TERMINAL or remaining <= 0:
                    return record
                pubsub.get_message(timeout=min(remaining, 1.0))
        finally:
            pubsub.close()
