"""What the views talk to: the jobs' services, opened once by the app factory and kept on
``app.extensions``."""

from __future__ import annotations

from flask import current_app

from jobs.queue import Enqueue
from jobs.services import JobServices, open_services
from storage import StorageSettings


def build_services(
    settings: StorageSettings, enqueue: Enqueue | None = None, notify: Enqueue | None = None
) -> JobServices:
    """Raises ``StorageConfigError`` when storage is misconfigured, so the API will not start.

    Messages go out through a Celery app that only produces (it imports no task module);
    ``enqueue``/``notify`` replace them (tests keep jobs off the broker)."""
    from tasks.app import create_celery

    return open_services(settings, create_celery(), enqueue=enqueue, notify=notify)


def services() -> JobServices:
    return current_app.extensions["cutout"]  # type: ignore[no-any-return]
