"""What the views talk to, built once by the app factory and kept on ``app.extensions``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import current_app

from storage import ObjectStore, StorageSettings, build_store
from storage.heartbeats import Heartbeats
from storage.jobs import JobStore
from storage.webhooks import webhook_trigger

Enqueue = Callable[[str], None]


@dataclass
class Services:
    jobs: JobStore
    store: ObjectStore
    heartbeats: Heartbeats
    redis: redis.Redis
    enqueue: Enqueue
    model_id: str


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
    """``notify(job_id)`` runs when this process ends a job that has a webhook (a cancel)."""
    client = redis.Redis.from_url(settings.redis_url)
    on_terminal = webhook_trigger(notify or celery_notify())
    return Services(
        jobs=JobStore(client, settings.key_prefix, settings.job_ttl_seconds, on_terminal),
        store=build_store(settings),
        heartbeats=Heartbeats(client, settings.key_prefix),
        redis=client,
        enqueue=enqueue or celery_enqueue(),
        model_id=model_id,
    )


def services() -> Services:
    return current_app.extensions["cutout"]  # type: ignore[no-any-return]
