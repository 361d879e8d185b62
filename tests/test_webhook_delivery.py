"""Webhook delivery without Celery: attempts against a real receiver on loopback, verified
with the ``standardwebhooks`` package; the SSRF guard; the terminal hook on the job store."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from standardwebhooks import Webhook, WebhookVerificationError

from jobs.record import JobRecord, WebhookState, now_iso
from jobs.store import Change, JobStore
from jobs.webhooks.delivery import WebhookSender, backoff, judge
from jobs.webhooks.outbound import (
    ForbiddenTarget,
    InvalidTarget,
    Reply,
    Resolver,
    check_target,
    is_reachable,
    system_resolve,
)
from jobs.webhooks.settings import WebhookSettings, parse_networks
from storage.local import LocalStore
from storage.result_cache import StoredOutput
from tests.conftest import WebhookReceiver
from tests.records import job_record

LOOPBACK = parse_networks("127.0.0.0/8")


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


NEW_SECRET, OLD_SECRET = make_secret(), make_secret()


def settings(**changes: Any) -> WebhookSettings:
    base = {
        "secrets": (NEW_SECRET, OLD_SECRET),
        "allow": LOOPBACK,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "retry_base": 0.1,
        "retry_max_delay": 0.4,
        "retry_for": 60.0,
        "public_url": "http://api.test",
    }
    return WebhookSettings(**{**base, **changes})


@pytest.fixture
def jobs(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def finished_job(jobs: JobStore, url: str, status: str = "succeeded") -> str:
    job_id = os.urandom(8).hex()
    color = StoredOutput("results/ab/color.png", "image/png", 64, 48, 100, (3, 4, 50, 40))
    jobs.create(
        job_record(
            job_id,
            status,
            format="png",
            completed_at=now_iso(),
            outputs={"color": color},
            webhook=WebhookState(url),
        )
    )
    return job_id


def sender(
    jobs: JobStore, tmp_path: Path, resolve: Resolver = system_resolve, **changes: Any
) -> WebhookSender:
    return WebhookSender(jobs, LocalStore(tmp_path), settings(**changes), resolve, random.Random(0))


def test_a_delivered_webhook_verifies_with_either_secret(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    job_id = finished_job(jobs, webhook_receiver.url("/hook"))
    assert sender(jobs, tmp_path).attempt(job_id, 1) is None
    (got,) = webhook_receiver.received("/hook")
    for secret in (NEW_SECRET, OLD_SECRET):  # rotation: both signatures are sent
        event = Webhook(secret).verify(got.body, got.headers)
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job_id and "webhook" not in event["data"]
    assert event["data"]["outputs"]["color"]["url"] == "http://api.test/files/results/ab/color.png"
    assert event["data"]["foreground"] == {"left": 3, "top": 4, "width": 50, "height": 40}
    assert got.headers["webhook-id"] == f"msg_{job_id}"
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(make_secret()).verify(got.body, got.headers)
    hook = jobs.get(job_id).webhook  # type: ignore[union-attr]
    assert hook.state == "delivered" and hook.attempts == 1
    assert hook.last_status == 200 and hook.delivered_at
    assert [h.status for h in hook.history] == [200]


def test_5xx_and_429_are_retried_with_backoff_and_retry_after(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    url = webhook_receiver.answer("/hook", (503, {}), (429, {"Retry-After": "7"}))
    job_id = finished_job(jobs, url)
    send = sender(jobs, tmp_path)
    first = send.attempt(job_id, 1)
    assert first is not None and 0.05 <= first <= 0.1
    assert send.attempt(job_id, 2) == 7.0, "Retry-After outweighs the short backoff"
    assert jobs.get(job_id).webhook.state == "retrying"  # type: ignore[union-attr]
    assert send.attempt(job_id, 3) is None
    got = webhook_receiver.received("/hook")
    assert len({r.headers["webhook-id"] for r in got}) == 1, "one id across retries"
    for request in got:
        Webhook(OLD_SECRET).verify(request.body, request.headers)
    hook = jobs.get(job_id).webhook  # type: ignore[union-attr]
    assert [h.status for h in hook.history] == [503, 429, 200]
    assert hook.attempts == 3 and hook.state == "delivered"


def test_every_attempt_reports_its_outcome_to_the_metrics(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    from observability import metrics
    from tasks.webhook import _count_delivery

    def count(outcome: str) -> float:
        return metrics.WEBHOOK_DELIVERIES.labels(outcome=outcome)._value.get()

    before = {o: count(o) for o in metrics.WEBHOOK_OUTCOMES}
    job_id = finished_job(jobs, webhook_receiver.answer("/m", (503, {})))
    send = WebhookSender(
        jobs, LocalStore(tmp_path), settings(), system_resolve, random.Random(0), _count_delivery
    )
    assert send.attempt(job_id, 1) is not None
    assert send.attempt(job_id, 2) is None
    gone = finished_job(jobs, webhook_receiver.answer("/gone", (410, {})))
    assert send.attempt(gone, 1) is None
    moved = {o: count(o) - before[o] for o in metrics.WEBHOOK_OUTCOMES}
    assert moved == {"retried": 1, "delivered": 1, "failed": 1}


def test_a_redirect_is_a_failure_and_is_not_followed(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    url = webhook_receiver.answer("/hook", (302, {"Location": webhook_receiver.url("/moved")}))
    job_id = finished_job(jobs, url)
    assert sender(jobs, tmp_path).attempt(job_id, 1) is None
    assert webhook_receiver.received("/moved") == []
    hook = jobs.get(job_id).webhook  # type: ignore[union-attr]
    assert hook.state == "failed" and hook.last_status == 302
    assert "redirect" in hook.last_error


@pytest.mark.parametrize(("status", "state"), [(410, "gone"), (404, "failed"), (400, "failed")])
def test_gone_and_other_4xx_stop(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path, status: int, state: str
) -> None:
    job_id = finished_job(jobs, webhook_receiver.answer("/hook", (status, {})))
    assert sender(jobs, tmp_path).attempt(job_id, 1) is None
    assert jobs.get(job_id).webhook.state == state  # type: ignore[union-attr]


def test_timeouts_and_refused_connections_are_retried(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    webhook_receiver.delay = 1.5
    job_id = finished_job(jobs, webhook_receiver.url("/slow"))
    assert sender(jobs, tmp_path, read_timeout=0.3).attempt(job_id, 1) is not None
    hook = jobs.get(job_id).webhook  # type: ignore[union-attr]
    assert hook.last_status is None and "Timeout" in hook.last_error

    from devtools.redis_server import free_port

    closed = finished_job(jobs, f"http://127.0.0.1:{free_port()}/")
    assert sender(jobs, tmp_path).attempt(closed, 1) is not None
    assert "cannot connect" in jobs.get(closed).webhook.last_error  # type: ignore[union-attr]


def test_retries_stop_once_the_window_is_spent() -> None:
    rng = random.Random(0)
    window = settings(retry_for=1.0)
    assert judge(Reply(500), 3, 0.5, window, rng).state == "retrying"
    assert judge(Reply(500), 3, 0.95, window, rng).state == "failed"
    assert judge(Reply(503, retry_after=5.0), 1, 0.0, window, rng).state == "failed"
    defaults = WebhookSettings()
    delays = [backoff(n, defaults, rng) for n in range(1, 12)]
    assert 2.5 <= delays[0] <= 5 and max(delays) <= defaults.retry_max_delay
    assert all(d >= defaults.retry_max_delay / 2 for d in delays[6:]), "capped, still jittered"


def test_a_second_copy_of_a_message_sends_nothing(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    job_id = finished_job(jobs, webhook_receiver.answer("/hook", (500, {})))
    send = sender(jobs, tmp_path)
    assert send.attempt(job_id, 1) is not None
    assert send.attempt(job_id, 1) is None, "attempt 1 was made already"
    assert len(webhook_receiver.received("/hook")) == 1


def test_a_loopback_receiver_that_is_not_allowlisted_is_never_contacted(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    job_id = finished_job(jobs, webhook_receiver.url("/hook"))
    assert sender(jobs, tmp_path, allow=()).attempt(job_id, 1) is None
    assert webhook_receiver.connections == 0
    hook = jobs.get(job_id).webhook  # type: ignore[union-attr]
    assert hook.state == "failed" and "not a public address" in hook.last_error


def test_the_connection_goes_to_the_checked_address(
    jobs: JobStore, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    # A name only this resolver knows: delivery can only reach it through the checked address.
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if host == "hooks.cutout.test" else []

    url = f"http://hooks.cutout.test:{webhook_receiver.port}/hook"
    job_id = finished_job(jobs, url)
    assert sender(jobs, tmp_path, resolve=resolve).attempt(job_id, 1) is None
    (got,) = webhook_receiver.received("/hook")
    assert got.headers["Host"] == f"hooks.cutout.test:{webhook_receiver.port}"
    assert lookups == ["hooks.cutout.test"], "resolved once, then pinned"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "::1", "::",
        "fe80::1%eth0", "fc00::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "2001:db8::1",
    ],
)  # fmt: skip
def test_private_and_reserved_addresses_are_refused(address: str) -> None:
    assert not is_reachable(address)


def test_public_and_allowlisted_addresses_pass() -> None:
    assert is_reachable("8.8.8.8") and is_reachable("2606:4700:4700::1111")
    assert is_reachable("10.1.2.3", [ipaddress.ip_network("10.1.0.0/16")])
    assert not is_reachable("10.2.0.1", [ipaddress.ip_network("10.1.0.0/16")])


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook", "http://[fd00::1]/", "https://169.254.169.254/latest/meta-data",
        "http://localhost:8000/", "http://2130706433/", "http://0x7f.1/", "http://[::ffff:7f00:1]/",
    ],
)  # fmt: skip
def test_private_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(ForbiddenTarget):
        check_target(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/", "javascript:alert(1)", "http://", "http:///path", "//example.com",
        "http://user:pw@example.com/", "http://exa mple.com/", "http://example.com:99999/",
        "http://[::1/", "http://example.com/\x00", "http://ex\u00e4mple.com/",
        "http://example.com/" + "a" * 2100,
    ],
)  # fmt: skip
def test_malformed_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidTarget):
        check_target(url)


def test_secrets_must_be_whsec_base64_of_24_bytes() -> None:
    for bad in ("plain", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            WebhookSettings(secrets=(bad,))
    env = {"CUTOUT_WEBHOOK_SECRETS": f"{NEW_SECRET} {OLD_SECRET}",
           "CUTOUT_WEBHOOK_ALLOWLIST": "127.0.0.1, 10.0.0.0/8"}  # fmt: skip
    loaded = WebhookSettings.from_env(env)
    assert loaded.secrets == (NEW_SECRET, OLD_SECRET) and len(loaded.allow) == 2


def test_the_terminal_hook_fires_once_per_job(redis_client: redis.Redis) -> None:
    ended: list[tuple[str, str]] = []
    store = JobStore(redis_client, on_terminal=lambda r: ended.append((r.id, r.status)))

    def becomes(status: str) -> Change:
        return lambda r: replace(r, status=status)

    store.create(job_record("a"))
    store.update("a", becomes("processing"))
    store.update("a", becomes("canceled"))
    store.update("a", becomes("succeeded"))  # terminal to terminal: not a new ending
    store.update("a", lambda r: replace(r, webhook=WebhookState("http://x", "delivered")))
    store.create(job_record("b", "succeeded"))  # a cache hit
    assert ended == [("a", "canceled"), ("b", "succeeded")]


def test_the_hook_failing_leaves_the_job_ended(redis_client: redis.Redis) -> None:
    def broken(record: JobRecord) -> None:
        raise ConnectionError("broker down")

    store = JobStore(redis_client, on_terminal=broken)
    store.create(job_record("c"))
    assert store.update("c", lambda r: replace(r, status="failed")).status == "failed"  # type: ignore[union-attr]
    assert json.loads(redis_client.get("cutout:job:c"))["status"] == "failed"  # type: ignore[arg-type]
