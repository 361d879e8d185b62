"""The ``io`` queue's periodic housekeeping (scheduled by Celery beat, see celeryconfig)."""

from __future__ import annotations

import dataclasses
import logging

from celery import Task, shared_task

from jobs.cleanup import clean_up
from jobs.queue import CLEANUP_TASK
from tasks.resources import JobResources

log = logging.getLogger("cutout.cleanup")


class CleanupTask(JobResources, Task):
    pass


@shared_task(base=CleanupTask, bind=True, name=CLEANUP_TASK)
def cleanup(self: CleanupTask) -> dict[str, int]:
    svc = self.services
    report = clean_up(svc.dispatcher, svc.settings.staging_grace_seconds)
    log.info("cleanup: %s", report)
    return dataclasses.asdict(report)
