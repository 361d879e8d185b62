"""Which workers are alive: each ready worker refreshes its score in a Redis sorted set, and
withdraws it as it shuts down; a worker that died without a word drops out ``stale_after``
seconds after its last beat."""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger("cutout.worker")


class Heartbeats:
    def __init__(self, client: redis.Redis, prefix: str = "cutout", stale_after: float = 15.0):
        self.redis = client
        self.prefix = prefix
        self.stale_after = stale_after

    def _key(self, queue: str) -> str:
        return f"{self.prefix}:workers:{queue}"

    def beat(self, queue: str, worker: str) -> None:
        self.redis.zadd(self._key(queue), {worker: time.time()})

    def leave(self, queue: str, worker: str) -> None:
        self.redis.zrem(self._key(queue), worker)

    def alive(self, queue: str) -> list[str]:
        key = self._key(queue)
        cutoff = time.time() - self.stale_after
        self.redis.zremrangebyscore(key, "-inf", cutoff)
        members: list[bytes] = self.redis.zrange(key, 0, -1)  # type: ignore[assignment]
        return [m.decode() for m in members]

    def keep_alive(self, queue: str, worker: str, every: float = 5.0) -> Beating:
        """Beat for ``worker`` now and every ``every`` seconds, from a daemon thread."""
        beating = Beating(self, queue, worker, every)
        beating.start()
        return beating


class Beating:
    """A worker's heartbeat in progress; ``stop`` ends it and withdraws the worker."""

    def __init__(self, heartbeats: Heartbeats, queue: str, worker: str, every: float) -> None:
        self.heartbeats = heartbeats
        self.queue = queue
        self.worker = worker
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cutout-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.heartbeats.beat(self.queue, self.worker)
            except Exception:
                log.warning("heartbeat to Redis failed", exc_info=True)
            self._stop.wait(self.every)

    def stop(self) -> None:
        """Stop beating, then leave (after the last beat, which would otherwise re-add it)."""
        self._stop.set()
        self._thread.join(10.0)
        try:
            self.heartbeats.leave(self.queue, self.worker)
        except Exception:  # the entry goes stale by itself
            log.warning("could not withdraw the heartbeat of %s", self.worker, exc_info=True)
