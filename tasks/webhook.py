"""The ``io`` queue's webhook task: one delivery attempt per message, the next one scheduled
as a Celery retry with the delay that ``jobs.webhooks.delivery`` decided."""

from __future__ import annotations

import math
from functools import cached_property

from celery import Task, shared_task

from jobs.amqp_queues import is_amqp
from jobs.queue import WEBHOOK_TASK
from jobs.webhooks.delivery import Verdict, WebhookSender
from jobs.webhooks.settings import WebhookSettings
from observability import metrics
from tasks.resources import JobResources


class WebhookTask(JobResources, Task):
    """Holds the per-process sender, built on first use."""

    @cached_property
    def sender(self) -> WebhookSender:
        svc = self.services
        return WebhookSender(
            svc.jobs, svc.store, WebhookSettings.from_env(), on_verdict=_count_delivery
        )


def _count_delivery(verdict: Verdict) -> None:
    outcome = {"delivered": "delivered", "retrying": "retried"}.get(verdict.state, "failed")
    metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


@shared_task(base=WebhookTask, bind=True, name=WEBHOOK_TASK, max_retries=None)
def send_webhook(self: WebhookTask, job_id: str, attempt: int = 1) -> None:
    retry_in = self.sender.attempt(job_id, attempt)
    if retry_in is not None:
        raise self.retry(args=[job_id, attempt + 1], countdown=countdown(self, retry_in))


def countdown(task: Task, seconds: float) -> float:
    """The retry's countdown. RabbitMQ's native delayed delivery (quorum queues) counts whole
    seconds and refuses a countdown under one (kombu raises ValueError, which drops the
    retry): round up there, so a retry is never early nor lost."""
    if is_amqp(str(task.app.conf.broker_url)):
        return max(1, math.ceil(seconds))
    return seconds
