"""Queue depth and age, read at scrape time from whatever knows the queues (``jobs.queue``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

import redis
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("cutout.metrics")


class QueueReader(Protocol):
    def depth(self, queue: str) -> int: ...

    def oldest_age(self, queue: str) -> float | None: ...


class QueueCollector:
    """``cutout_queue_depth{queue}`` and ``cutout_queue_oldest_age_seconds{queue}``.

    A queue's age is how long its oldest waiting job has waited since it was submitted; 0 when
    nothing waits. Queues whose oldest message is not a job get no age.
    """

    def __init__(self, queues: QueueReader, names: Sequence[str]) -> None:
        self.queues = queues
        self.names = list(names)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "cutout_queue_depth", "Messages waiting in the broker, by queue", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "cutout_queue_oldest_age_seconds",
            "Seconds the oldest waiting job has waited since it was submitted, by queue",
            labels=["queue"],
        )
        try:
            for name in self.names:
                count = self.queues.depth(name)
                depth.add_metric([name], count)
                oldest = self.queues.oldest_age(name) if count else 0.0
                if oldest is not None:
                    age.add_metric([name], oldest)
        except redis.RedisError:
            log.warning("could not read the queues from the broker", exc_info=True)
            return  # absent rather than wrong; Prometheus alerts on absence
        yield depth
        yield age
