"""The ``io`` queue's webhook task: one delivery attempt per message, the next one scheduled
as a Celery retry with the delay that ``tasks.webhook_delivery`` decided."""

from __future__ import annotations

from functools import cached_property

import redis
from celery import Task, shared_task

from observability import metrics
from storage import StorageSettings, build_store
from storage.jobs import JobStore
from storage.webhooks import WebhookSettings
from tasks.webhook_delivery import Verdict, WebhookSender

TASK_NAME = "cutout.webhook"


class WebhookTask(Task):
    """Holds the per-process stores and settings, built on first use."""

    @cached_property
    def sender(self) -> WebhookSender:
        storage = StorageSettings.from_env()
        jobs = JobStore(
            redis.Redis.from_url(storage.redis_url), storage.key_prefix, storage.job_ttl_seconds
        )
        return WebhookSender(
            jobs, build_store(storage), WebhookSettings.from_env(), on_verdict=_count_delivery
        )


def _count_delivery(verdict: Verdict) -> None:
    outcome = {"delivered": "delivered", "retrying": "retried"}.get(verdict.state, "failed")
    metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


@shared_task(base=WebhookTask, bind=True, name=TASK_NAME, max_retries=None)
def send_webhook(self: WebhookTask, job_id: str, attempt: int = 1) -> None:
    retry_in = self.sender.attempt(job_id, attempt)
    if retry_in is not None:
        raise self.retry(args=[job_id, attempt + 1], countdown=retry_in)
