"""Delivering a job's webhook, one attempt at a time. No Celery here: the task asks for an
attempt and gets back how long to wait before the next one (or None when it is over).

Status handling follows Standard Webhooks: 2xx delivered; timeouts, connection errors, 5xx
and 429 retried with exponential backoff and jitter (a ``Retry-After`` is honoured) until
``retry_for`` runs out; 410 stops for good; 3xx is a failure and is never followed; any
other answer is a failure. Every attempt is recorded on the job.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from jobs.public import public_job
from jobs.record import JobRecord, WebhookAttempt, WebhookClaim, now_iso
from jobs.store import JobStore
from jobs.webhooks.outbound import (
    ForbiddenTarget,
    InvalidTarget,
    Reply,
    Resolver,
    check_target,
    post,
    system_resolve,
)
from jobs.webhooks.settings import WebhookSettings
from jobs.webhooks.signing import message_id, signed_headers
from storage.base import ObjectStore

log = logging.getLogger("cutout.webhooks")
HISTORY = 20  # attempts kept on the job


@dataclass(frozen=True)
class Verdict:
    state: str  # delivered | retrying | failed | gone
    retry_in: float | None = None
    note: str | None = None


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def payload(record: JobRecord, store: ObjectStore, base_url: str) -> bytes:
    """The event: the public job (links, never image bytes), without its delivery state."""
    data = public_job(replace(record, webhook=None), store, base_url)
    event = {"type": f"job.{record.status}", "timestamp": record.completed_at, "data": data}
    return json.dumps(event, separators=(",", ":")).encode()


def backoff(attempt: int, settings: WebhookSettings, rng: random.Random) -> float:
    """Exponential, capped, with "equal jitter": half fixed, half random."""
    cap = min(settings.retry_max_delay, settings.retry_ceiling)
    delay = min(settings.retry_base * settings.retry_factor ** (attempt - 1), cap)
    return delay / 2 + rng.uniform(0, delay / 2)


def judge(
    reply: Reply, attempt: int, elapsed: float, settings: WebhookSettings, rng: random.Random
) -> Verdict:
    status = reply.status
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    if status == 410:
        return Verdict("gone", note="the receiver answered 410 Gone; no more attempts")
    if status is not None and 300 <= status < 400:
        return Verdict("failed", note="redirects are not followed; update the webhook URL")
    if status is not None and status != 429 and status < 500:
        return Verdict("failed", note=f"the receiver refused the webhook ({status})")
    # A Retry-After is honoured up to the ceiling too: a longer wait would be redelivered.
    delay = min(
        max(backoff(attempt, settings, rng), reply.retry_after or 0.0), settings.retry_ceiling
    )
    if elapsed + delay > settings.retry_for:
        return Verdict("failed", note=f"gave up after {attempt} attempts")
    return Verdict("retrying", retry_in=delay)


class WebhookSender:
    def __init__(
        self,
        jobs: JobStore,
        store: ObjectStore,
        settings: WebhookSettings,
        resolve: Resolver = system_resolve,
        rng: random.Random | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.settings = settings
        self.resolve = resolve
        self.rng = rng or random.Random()
        self.on_verdict = on_verdict  # e.g. a metrics counter, told of every attempt's outcome

    def attempt(self, job_id: str, number: int) -> float | None:
        """Make delivery attempt ``number``; seconds until the next one, or None when over."""
        record = self._claim(job_id, number)
        if record is None or record.webhook is None:
            return None
        hook = record.webhook
        first_attempt_at = hook.first_attempt_at or time.time()
        body = payload(record, self.store, self.settings.public_url)
        started = time.time()
        headers = signed_headers(self.settings.secrets, message_id(job_id), int(started), body)
        try:
            target = check_target(hook.url, self.settings.allow, self.resolve)
        except ForbiddenTarget as exc:
            reply, verdict = Reply(None, None, str(exc)), Verdict("failed", note="refused")
        except InvalidTarget as exc:  # DNS may come back: retried like a timeout
            reply = Reply(None, None, str(exc))
            verdict = judge(reply, number, started - first_attempt_at, self.settings, self.rng)
        else:
            reply = post(
                target, body, headers, self.settings.connect_timeout, self.settings.read_timeout
            )
            verdict = judge(reply, number, started - first_attempt_at, self.settings, self.rng)
        self._record(job_id, number, started, reply, verdict)
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        log.info("webhook of job %s, attempt %d: %s (%s)", job_id, number, verdict.state, reply)
        return verdict.retry_in

    def _claim(self, job_id: str, number: int) -> JobRecord | None:
        """Take attempt ``number`` unless it was made, or another worker holds it right now
        (a message the broker delivered twice); None when there is nothing to do."""
        token = uuid.uuid4().hex
        now = time.time()
        lease = self.settings.connect_timeout + self.settings.read_timeout + 30

        def claim(current: JobRecord) -> JobRecord | None:
            hook = current.webhook
            if not current.ended or hook is None:
                return None
            if hook.state not in ("pending", "retrying") or hook.attempts >= number:
                return None
            held = hook.claim
            if held and held.attempt >= number and held.until > now:
                return None
            taken = WebhookClaim(number, now + lease, token)
            first = hook.first_attempt_at or now
            return replace(current, webhook=replace(hook, claim=taken, first_attempt_at=first))

        record = self.jobs.update(job_id, claim)
        hook = record.webhook if record is not None else None
        if hook is None or hook.claim is None or hook.claim.token != token:
            return None
        if number == 1:  # keep the job (the payload) for as long as retries may run
            self.jobs.keep_for(job_id, int(self.settings.retry_for) + 3600)
        return record

    def _record(
        self, job_id: str, number: int, started: float, reply: Reply, verdict: Verdict
    ) -> None:
        entry = WebhookAttempt(
            attempt=number,
            at=_iso(started),
            status=reply.status,
            error=reply.error,
            ms=round((time.time() - started) * 1000, 2),
        )

        def apply(current: JobRecord) -> JobRecord | None:
            hook = current.webhook
            if hook is None:
                return None
            next_at = _iso(time.time() + verdict.retry_in) if verdict.retry_in is not None else None
            done = replace(
                hook,
                state=verdict.state,
                attempts=max(hook.attempts, number),
                last_status=reply.status,
                last_error=reply.error or verdict.note,
                delivered_at=now_iso() if verdict.state == "delivered" else None,
                next_attempt_at=next_at,
                history=(*hook.history[-(HISTORY - 1) :], entry),
                claim=None,
            )
            return replace(current, webhook=done)

        self.jobs.update(job_id, apply)
