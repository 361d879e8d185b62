"""The ``io`` queue's periodic housekeeping (scheduled by Celery beat, see celeryconfig)."""

from __future__ import annotations

import dataclasses
import logging

from celery import Task, shared_task

from storage.cleanup import clean_up
from tasks.resources import StorageResources

log = logging.getLogger("cutout.cleanup")


class CleanupTask(StorageResources, Task):
    pass


@shared_task(base=CleanupTask, bind=True, name="cutout.cleanup")
def cleanup(self: CleanupTask) -> dict[str, int]:
    report = clean_up(self.dispatcher, self.storage_settings.staging_grace_seconds)
    log.info("cleanup: %s", report)
    return dataclasses.asdict(report)
