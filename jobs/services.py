"""What a process needs to move jobs along, assembled in this one place: Redis, the job store
(with the end hook), the object store, the result cache, the dispatcher, the queue, its
admission and the workers' heartbeats. The API builds it once at start, a Celery worker once
per process."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from jobs.admission import Admission
from jobs.dispatch import Dispatcher
from jobs.end_hook import job_end_hook
from jobs.heartbeats import Heartbeats
from jobs.known_images import KnownImages
from jobs.queue import Enqueue, JobQueue, Producer
from jobs.store import JobStore
from storage import ObjectStore, StorageSettings, open_store
from storage.redis_client import is_sentinel, open_redis
from storage.result_cache import ResultCache


@dataclass(frozen=True)
class JobServices:
    settings: StorageSettings
    redis: redis.Redis
    queue: JobQueue
    jobs: JobStore  # jobs this process ends are counted, logged and get their webhook queued
    store: ObjectStore
    cache: ResultCache
    dispatcher: Dispatcher
    heartbeats: Heartbeats
    admission: Admission  # the queue-depth limit, atomic
    known: KnownImages  # the photos each key has uploaded (hash-first submits)


def redis_options(settings: StorageSettings) -> dict[str, object]:
    """Bounded waits for every Redis client of the service: a connect or a reply slower than
    the timeout fails, and a failed command is retried twice within half a second (enough to
    reconnect after a restart; redis-py's own default retries ten times, which made a
    request against a stopped Redis take seconds). Through Sentinel, ``open_redis`` and
    ``limiter_options`` retry for as long as a failover takes instead."""
    options: dict[str, object] = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    if not is_sentinel(settings.redis_url):
        options["retry"] = Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), 2)
    return options


def open_services(
    settings: StorageSettings,
    producer: Producer,
    *,
    enqueue: Enqueue | None = None,
    notify: Enqueue | None = None,
) -> JobServices:
    """Everything, its storage proven usable (``StorageConfigError`` says what is wrong).

    ``enqueue`` and ``notify`` replace the queue's own messages for a job and its webhook (the
    API's tests keep jobs off the broker with them)."""
    client = open_redis(settings.redis_url, **redis_options(settings))  # plain, or via Sentinel
    queue = JobQueue(producer, client)
    end_hook = job_end_hook(notify or queue.notify_webhook)
    jobs = JobStore(client, settings.key_prefix, settings.job_ttl_seconds, end_hook)
    store = open_store(settings)
    cache = ResultCache(client, settings.key_prefix, settings.cache_ttl_seconds)
    return JobServices(
        settings=settings,
        redis=client,
        queue=queue,
        jobs=jobs,
        store=store,
        cache=cache,
        dispatcher=Dispatcher(jobs, cache, store, enqueue or queue.enqueue_segment),
        heartbeats=Heartbeats(client, settings.key_prefix),
        admission=Admission(client, queue.broker, settings.key_prefix),
        known=KnownImages(client, settings.key_prefix, settings.cache_ttl_seconds),
    )
