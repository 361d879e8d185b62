"""Per-process resources for tasks, built on first use (Celery's "Instantiation")."""

from __future__ import annotations

from functools import cached_property

from celery import Celery

from jobs.services import JobServices, open_services
from storage import StorageSettings


class JobResources:
    """A mixin for Task classes: the jobs' services (``jobs.services``), one per worker
    process, sending their messages through this worker's Celery app."""

    app: Celery  # set by Celery on the task

    @cached_property
    def services(self) -> JobServices:
        return open_services(StorageSettings.from_env(), self.app)
