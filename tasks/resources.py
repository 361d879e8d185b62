"""Per-process storage resources for tasks, built on first use (Celery's "Instantiation")."""

from __future__ import annotations

from functools import cached_property

import redis
from celery import Celery

from storage import ObjectStore, StorageSettings, open_store
from storage.dispatch import Dispatcher
from storage.jobs import JobStore
from storage.result_cache import ResultCache
from tasks.job_end import job_end_hook
from tasks.webhook import TASK_NAME as WEBHOOK_TASK


class StorageResources:
    """A mixin for Task classes: settings, Redis, the job store (with the job-end hook), the
    object store, the result cache and the dispatcher, one of each per worker process."""

    app: Celery  # set by Celery on the task

    @cached_property
    def storage_settings(self) -> StorageSettings:
        return StorageSettings.from_env()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.storage_settings.redis_url)

    @cached_property
    def jobs(self) -> JobStore:
        """Jobs this process ends are counted, logged and get their webhook queued."""
        s = self.storage_settings
        return JobStore(self.redis, s.key_prefix, s.job_ttl_seconds, job_end_hook(self.notify))

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.storage_settings)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        s = self.storage_settings
        cache = ResultCache(self.redis, s.key_prefix, s.cache_ttl_seconds)
        return Dispatcher(self.jobs, cache, self.store, self.enqueue)

    def notify(self, job_id: str) -> None:
        self.app.send_task(WEBHOOK_TASK, args=[job_id, 1])

    def enqueue(self, job_id: str) -> None:
        # Routed to the gpu queue by celeryconfig; the job id doubles as the task id.
        self.app.send_task("cutout.segment", args=[job_id], task_id=job_id)
