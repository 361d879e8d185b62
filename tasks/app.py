"""The Celery app factory."""

from __future__ import annotations

from celery import Celery


def create_celery() -> Celery:
    app = Celery("cutout")
    app.config_from_object("celeryconfig")
    app.conf.include = ["tasks.segment", "tasks.webhook", "tasks.cleanup"]
    return app
