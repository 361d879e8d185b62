"""Result-cache counters, kept in Redis so every API process adds to the same totals.

Names follow Prometheus conventions so an exporter can publish them as they are.
"""

from __future__ import annotations

import redis

CACHE_HITS = "cache_hits_total"  # answered from the cache, no worker touched
CACHE_MISSES = "cache_misses_total"  # queued to compute (all outputs, or the missing ones)
CACHE_INFLIGHT_JOINS = "cache_inflight_joins_total"  # attached to an identical running job
COUNTERS = (CACHE_HITS, CACHE_MISSES, CACHE_INFLIGHT_JOINS)


class CacheMetrics:
    def __init__(self, client: redis.Redis, prefix: str = "cutout") -> None:
        self.redis = client
        self.key = f"{prefix}:metrics:cache"

    def count(self, name: str) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name!r}; known: {', '.join(COUNTERS)}")
        self.redis.hincrby(self.key, name, 1)

    def read(self) -> dict[str, int]:
        """Every counter, zero when it never moved."""
        values = self.redis.hmget(self.key, list(COUNTERS))
        return {name: int(v or 0) for name, v in zip(COUNTERS, values, strict=True)}  # type: ignore[arg-type]
