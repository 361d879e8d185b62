"""What the views talk to, built once by the app factory and kept on ``app.extensions``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import current_app

from storage import ObjectStore, StorageSettings, build_store
from storage.heartbeats import Heartbeats
from storage.jobs import JobStore

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


def build_services(settings: StorageSettings, model_id: str, enqueue: Enqueue | None) -> Services:
    client = redis.Redis.from_url(settings.redis_url)
    return Services(
        jobs=JobStore(client, settings.key_prefix, settings.job_ttl_seconds),
        store=build_store(settings),
        heartbeats=Heartbeats(client, settings.key_prefix),
        redis=client,
        enqueue=enqueue or celery_enqueue(),
        model_id=model_id,
    )


def services() -> Services:
    return current_app.extensions["cutout"]  # type: ignore[no-any-return]
