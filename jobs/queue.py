"""The one module that knows the queue: the task names, the two messages the service sends
(a job for a gpu worker, a webhook's first delivery for an io worker) and how many messages
wait.

Messages go out through a Celery app's ``send_task`` (the producer: the API's app, or the
worker's own), so nothing here imports Celery. Depth and age are read from the broker itself
(RabbitMQ: ``jobs.amqp_queues``). On Redis, kombu's Redis transport keeps each queue as Redis
lists, one per priority step, the queue's own name for priority 0 and ``<queue><sep><step>``
for the others. Producers LPUSH and workers BRPOP, so the oldest message of a list sits at its
tail. Messages a worker has already taken (its prefetch) are not counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from jobs.amqp_queues import AmqpQueues, is_amqp
from jobs.record import parse_iso
from jobs.store import JobStore

SEGMENT_TASK = "cutout.segment"
WEBHOOK_TASK = "cutout.webhook"
CLEANUP_TASK = "cutout.cleanup"
GPU_QUEUE = "gpu"  # segmentation batches
IO_QUEUE = "io"  # everything that only waits on the network or the disk

Enqueue = Callable[[str], None]  # a job id in, a message out


class Producer(Protocol):
    """What sends messages: a Celery app."""

    conf: Any

    def send_task(self, name: str, *args: Any, **options: Any) -> Any: ...


def configured_queues(conf: Any) -> list[str]:
    """The queues celeryconfig routes to, plus the default one."""
    routed = {route["queue"] for route in (conf.task_routes or {}).values() if "queue" in route}
    return sorted(routed | {conf.task_default_queue})


class BrokerQueues:
    """The broker's lists of each queue, every priority step of it."""

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


class QueueReader(Protocol):
    """What reads a broker's queues: ``BrokerQueues`` (Redis) or ``AmqpQueues`` (RabbitMQ)."""

    def depth(self, queue: str) -> int: ...

    def oldest_task_ids(self, queue: str) -> list[str]: ...


def broker_queues(conf: Any, client: redis.Redis) -> QueueReader:
    """The reader for the broker ``conf`` names (``CUTOUT_BROKER_URL``): RabbitMQ, a Redis of
    its own, or by default the store's Redis, ``client`` (also when reached through Sentinel)."""
    url = str(conf.broker_url)
    if is_amqp(url):
        return AmqpQueues(url)
    own = getattr(conf, "cutout_broker_of_its_own", False)
    if own and url.startswith(("redis://", "rediss://", "unix://")):
        client = redis.Redis.from_url(url)
    return BrokerQueues(client, conf.broker_transport_options)


class JobQueue:
    def __init__(self, producer: Producer, client: redis.Redis) -> None:
        self.producer = producer
        self.broker = broker_queues(producer.conf, client)

    def enqueue_segment(self, job_id: str) -> None:
        """Queue a job for a gpu worker (routed by celeryconfig). The job id doubles as the
        task id, so Flower, the broker's messages and the job record name the same thing."""
        self.producer.send_task(SEGMENT_TASK, args=[job_id], task_id=job_id)

    def notify_webhook(self, job_id: str) -> None:
        """Queue the first delivery attempt of an ended job's webhook on the io queue."""
        self.producer.send_task(WEBHOOK_TASK, args=[job_id, 1])

    def depth(self, queue: str = GPU_QUEUE) -> int:
        """Messages waiting in ``queue``, over every priority list."""
        return self.broker.depth(queue)


class WaitingJobs:
    """The queues as the metrics read them: how many messages wait, and how long the oldest
    job has waited since it was submitted (the job id is the task id)."""

    def __init__(self, broker: QueueReader, jobs: JobStore) -> None:
        self.broker = broker
        self.jobs = jobs

    def depth(self, queue: str) -> int:
        return self.broker.depth(queue)

    def oldest_age(self, queue: str) -> float | None:
        """Seconds since the oldest waiting job was submitted; None when the messages at the
        lists' tails are not jobs."""
        records = [r for r in self.jobs.get_many(self.broker.oldest_task_ids(queue)) if r]
        if not records:
            return None
        created = min(parse_iso(r.created_at) for r in records)
        return max(0.0, time.time() - created)
