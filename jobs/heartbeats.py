"""Which workers are alive: each ready worker refreshes its score in a Redis sorted set, and
withdraws it as it shuts down; a worker that died without a word drops out ``stale_after``
seconds after its last beat.

Only beats the running Redis server received count. The sorted set is named after the
server's ``run_id``, which every start of the server draws anew: a set restored from disk
(AOF or RDB) after a restart, or replicated to a replica promoted since, belongs to an earlier
run and is never read, so a worker that exited before the restart is never counted, while a
live one is counted again at its next beat (``every`` seconds). Scores are the server's own
clock (``TIME``), so the API's and the workers' clocks need not agree. Each set expires a
while after its last beat, so the sets of earlier runs go away by themselves."""

from __future__ import annotations

import logging
import math
import threading

import redis

log = logging.getLogger("cutout.worker")


class Heartbeats:
    def __init__(self, client: redis.Redis, prefix: str = "cutout", stale_after: float = 15.0):
        self.redis = client
        self.prefix = prefix
        self.stale_after = stale_after

    def _now(self, queue: str) -> tuple[str, float]:
        """This server run's set for ``queue``, and the server's time."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.time()
            info, (seconds, micros) = pipe.execute()
        return f"{self.prefix}:workers:{queue}:{info['run_id']}", seconds + micros / 1e6

    def beat(self, queue: str, worker: str) -> None:
        key, now = self._now(queue)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {worker: now})
            pipe.expire(key, max(1, math.ceil(2 * self.stale_after)))
            pipe.execute()

    def leave(self, queue: str, worker: str) -> None:
        key, _ = self._now(queue)
        self.redis.zrem(key, worker)

    def alive(self, queue: str) -> list[str]:
        key, now = self._now(queue)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - self.stale_after)
            pipe.zrange(key, 0, -1)
            _, members = pipe.execute()
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
