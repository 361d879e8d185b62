"""Queue depth and age read from the Redis broker at scrape time.

kombu's Redis transport keeps each queue as Redis lists, one per priority step: the queue's own
name for priority 0 and ``<queue><sep><step>`` for the others. Producers LPUSH and workers BRPOP,
so the oldest message of a list sits at its tail. Messages a worker has already taken (its
prefetch, up to ``worker_prefetch_multiplier`` per process) are not counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client.core import GaugeMetricFamily

from storage.jobs import JobStore, parse_iso

log = logging.getLogger("cutout.metrics")


def configured_queues(conf: Any) -> list[str]:
    """The queues celeryconfig routes to, plus the default one."""
    routed = {route["queue"] for route in (conf.task_routes or {}).values() if "queue" in route}
    return sorted(routed | {conf.task_default_queue})


class BrokerQueues:
    def __init__(self, client: redis.Redis, transport_options: Mapping[str, Any] | None = None):
        options = transport_options or {}
        self.redis = client
        self.sep = options.get("sep", Channel.sep)
        self.steps = options.get("priority_steps", PRIORITY_STEPS)
        self.prefix = options.get("global_keyprefix", "")

    def lists(self, queue: str) -> list[str]:
        return [
            f"{self.prefix}{queue}{self.sep}{step}" if step else f"{self.prefix}{queue}"
            for step in self.steps
        ]

    def depth(self, queue: str) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            for name in self.lists(queue):
                pipe.llen(name)
            return sum(pipe.execute())

    def oldest_task_ids(self, queue: str) -> list[str]:
        """The task id at the tail of each non-empty priority list."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in self.lists(queue):
                pipe.lindex(name, -1)
            tails = pipe.execute()
        ids = []
        for raw in tails:
            if raw is not None:
                task_id = json.loads(raw).get("headers", {}).get("id")
                if task_id:
                    ids.append(task_id)
        return ids


class QueueCollector:
    """``cutout_queue_depth{queue}`` and ``cutout_queue_oldest_age_seconds{queue}``.

    A queue's age is how long its oldest waiting job has waited since it was submitted (the
    API uses the job id as the task id); 0 when nothing waits. Queues whose oldest message is
    not a job get no age.
    """

    def __init__(self, queues: BrokerQueues, names: Sequence[str], jobs: JobStore) -> None:
        self.queues = queues
        self.names = list(names)
        self.jobs = jobs

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
                oldest = self._oldest_age(name) if count else 0.0
                if oldest is not None:
                    age.add_metric([name], oldest)
        except redis.RedisError:
            log.warning("could not read the queues from the broker", exc_info=True)
            return  # absent rather than wrong; Prometheus alerts on absence
        yield depth
        yield age

    def _oldest_age(self, queue: str) -> float | None:
        records = [r for r in self.jobs.get_many(self.queues.oldest_task_ids(queue)) if r]
        if not records:
            return None
        created = min(parse_iso(r["created_at"]) for r in records)
        return max(0.0, time.time() - created)
