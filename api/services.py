"""What the views talk to, built once by the app factory and kept on ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from storage import ObjectStore, StorageSettings, open_store
from storage.dispatch import Dispatcher, Enqueue
from storage.heartbeats import Heartbeats
from storage.jobs import JobStore
from storage.result_cache import ResultCache
from tasks.job_end import job_end_hook


@dataclass
class Services:
    jobs: JobStore
    store: ObjectStore
    heartbeats: Heartbeats
    redis: redis.Redis
    enqueue: Enqueue
    model_id: str
    cache: ResultCache
    dispatcher: Dispatcher


def celery_enqueue() -> Enqueue:
    from tasks.app import create_celery

    celery = create_celery()

    def enqueue(job_id: str) -> None:
        # The job id doubles as the task id, so Flower and the job record name the same thing.
        celery.send_task("cutout.segment", args=[job_id], task_id=job_id)

    return enqueue


def celery_notify() -> Enqueue:
    """Queues the first delivery of a finished job's webhook on the ``io`` queue."""
    from tasks.app import create_celery

    celery = create_celery()

    def notify(job_id: str) -> None:
        celery.send_task("cutout.webhook", args=[job_id, 1])

    return notify


def build_services(
    settings: StorageSettings,
    model_id: str,
    enqueue: Enqueue | None,
    notify: Enqueue | None = None,
) -> Services:
    """Raises ``StorageConfigError`` when storage is misconfigured, so the API will not start.

    ``notify(job_id)`` queues the webhook of a job this process ends (a cache hit, a cancel,
    a follower handed over, a job the queue refused)."""
    client = redis.Redis.from_url(settings.redis_url)
    on_terminal = job_end_hook(notify or celery_notify())
    jobs = JobStore(client, settings.key_prefix, settings.job_ttl_seconds, on_terminal)
    store = open_store(settings)
    cache = ResultCache(client, settings.key_prefix, settings.cache_ttl_seconds)
    enqueue = enqueue or celery_enqueue()
    return Services(
        jobs=jobs,
        store=store,
        heartbeats=Heartbeats(client, settings.key_prefix),
        redis=client,
        enqueue=enqueue,
        model_id=model_id,
        cache=cache,
        dispatcher=Dispatcher(jobs, cache, store, enqueue),
    )


def services() -> Services:
    return current_app.extensions["cutout"]  # type: ignore[no-any-return]
