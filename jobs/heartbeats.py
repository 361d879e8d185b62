"""Which workers are alive: each ready worker refreshes its score in a Redis sorted set."""

from __future__ import annotations

import time

import redis


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
