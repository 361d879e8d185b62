"""The live service (gunicorn, a gpu worker, an io worker, Redis) against what clients and
attackers send: signed webhooks to a real receiver, cancels, the hostile corpus, and
schemathesis driving every operation of the OpenAPI document."""

from __future__ import annotations

import io
import json
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from PIL import Image
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from standardwebhooks import Webhook

from api.openapi import document
from tests.conftest import Stack, WebhookReceiver, wait_until
from tests.hostile_corpus import Case, accepted, corrupt_png, refused
from tests.test_service_e2e import fetch_image, poll
from tests.test_webhook_delivery import make_secret

pytestmark = pytest.mark.slow

NEW_SECRET, OLD_SECRET = make_secret(), make_secret()
STACK_ENV = {
    "CUTOUT_WEBHOOK_SECRETS": f"{NEW_SECRET} {OLD_SECRET}",
    "CUTOUT_WEBHOOK_ALLOWLIST": "127.0.0.0/8",  # the receiver runs on loopback
    "CUTOUT_WEBHOOK_RETRY_BASE": "0.2",
    "CUTOUT_WEBHOOK_RETRY_MAX_DELAY": "1",
    "CUTOUT_WEBHOOK_TIMEOUT": "3",
    # schemathesis sends hundreds of requests; the limits themselves are tested in-process.
    "CUTOUT_RATE_LIMIT_SUBMIT": "100000 per minute",
    "CUTOUT_RATE_LIMIT_READ": "100000 per minute",
}


def _jpeg(size: tuple[int, int] = (96, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 60, 40)).save(out, "JPEG")
    return out.getvalue()


def submit(stack: Stack, image: bytes, **form: str) -> requests.Response:
    return requests.post(
        f"{stack.api_url}/api/v2/jobs", files={"image": ("a.jpg", image)}, data=form, timeout=30
    )


@contextmanager
def paused(stack: Stack) -> Iterator[None]:
    """Freeze the gpu worker (SIGSTOP), so what happens meanwhile cannot race it."""
    os.killpg(stack.worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(stack.worker.pid, signal.SIGCONT)


def worker_result(stack: Stack, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """What the gpu task reported for the job (its Celery result), once it ran."""
    client = redis.Redis.from_url(stack.redis_url)
    raw = wait_until(lambda: client.get(f"celery-task-meta-{job_id}"), timeout, "the gpu task")
    return json.loads(raw)  # type: ignore[no-any-return]


def webhook_settled(stack: Stack, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        job = requests.get(f"{stack.api_url}/api/v2/jobs/{job_id}", timeout=10).json()
        return job if job["webhook"]["state"] not in ("pending", "retrying") else None

    return wait_until(settled, timeout, "the webhook", interval=0.1)  # type: ignore[no-any-return]


def test_a_webhook_fails_twice_then_arrives_signed(
    stack: Stack, io_worker: object, webhook_receiver: WebhookReceiver
) -> None:
    url = webhook_receiver.answer("/hook", (500, {}), (429, {"Retry-After": "1"}))
    # A job the gpu worker fails (it cannot decode it): the worker queues the webhook.
    response = submit(stack, corrupt_png(), webhook_url=url)
    assert response.status_code == 202, response.text
    job = webhook_settled(stack, response.json()["id"])
    hook = job["webhook"]
    assert hook["state"] == "delivered" and hook["attempts"] == 3
    assert hook["last_status"] == 200 and hook["delivered_at"]
    assert [h["status"] for h in hook["history"]] == [500, 429, 200]
    got = webhook_receiver.received("/hook")
    assert len(got) == 3 and len({r.headers["webhook-id"] for r in got}) == 1
    assert got[2].at - got[1].at >= 0.95, "Retry-After: 1 was honoured"
    for secret in (NEW_SECRET, OLD_SECRET):
        event = Webhook(secret).verify(got[2].body, got[2].headers)
    assert event["type"] == "job.failed" and event["data"]["id"] == job["id"]
    assert event["data"]["error"]["code"] == "invalid_image"


def test_a_queued_job_canceled_never_runs_and_its_redirecting_webhook_is_not_followed(
    stack: Stack, io_worker: object, webhook_receiver: WebhookReceiver
) -> None:
    url = webhook_receiver.answer("/hook", (307, {"Location": webhook_receiver.url("/moved")}))
    with paused(stack):
        job = submit(stack, _jpeg(), webhook_url=url, max_size="64").json()
        canceled = requests.delete(f"{stack.api_url}/api/v2/jobs/{job['id']}", timeout=10)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert worker_result(stack, job["id"])["result"]["status"] == "canceled"
    settled = webhook_settled(stack, job["id"])
    assert settled["started_at"] is None and settled["outputs"] == {}, "it never ran"
    assert settled["webhook"]["state"] == "failed" and settled["webhook"]["attempts"] == 1
    assert settled["webhook"]["last_status"] == 307
    assert webhook_receiver.received("/moved") == [], "the redirect was not followed"
    (got,) = webhook_receiver.received("/hook")
    assert Webhook(NEW_SECRET).verify(got.body, got.headers)["type"] == "job.canceled"


def test_a_running_job_canceled_finishes_without_outputs(stack: Stack) -> None:
    job = submit(stack, _jpeg((320, 240)), max_size="64", effects="color").json()
    location = f"{stack.api_url}/api/v2/jobs/{job['id']}"

    def processing() -> bool:
        return requests.get(location, timeout=10).json()["status"] == "processing"

    wait_until(processing, 60, "the job to start", interval=0.02)
    with paused(stack):  # so the cancel surely lands while the job is on the worker
        assert requests.delete(location, timeout=10).json()["status"] == "canceled"
    assert worker_result(stack, job["id"])["result"]["status"] == "canceled"
    after = requests.get(location, timeout=10).json()
    assert after["status"] == "canceled" and after["started_at"] and after["outputs"] == {}
    assert not (stack.files_dir / "staging" / job["id"]).exists()


def _post(stack: Stack, case: Case) -> requests.Response:
    files = None
    if case.image is not None:
        part = (case.filename, case.image) + ((case.part_type,) if case.part_type else ())
        files = {"image": part}
    return requests.post(
        f"{stack.api_url}/api/v2/jobs", files=files, data=case.form or None, timeout=60
    )


def test_the_hostile_corpus_leaves_the_service_whole(stack: Stack) -> None:
    cases = refused() + accepted()
    with ThreadPoolExecutor(6) as pool:  # all at once, the odd photos batched together
        responses = list(pool.map(lambda c: _post(stack, c), cases))
    for case, response in zip(cases, responses, strict=True):
        assert response.status_code == case.status, (case.name, response.text)
        if case.code:
            assert response.json()["error"]["code"] == case.code, case.name
    big = requests.post(
        f"{stack.api_url}/api/v2/jobs",
        data=b"\x00" * (26 * 1024 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=60,
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
    for case, response in zip(cases, responses, strict=True):
        if case.upright is None:
            continue
        job = poll(stack, response.headers["Location"])
        assert job["status"] == "succeeded", (case.name, job)
        color = job["outputs"]["color"]
        assert (color["width"], color["height"]) == case.upright, case.name
        assert fetch_image(color["url"]).size == case.upright
    assert stack.worker.poll() is None, "the worker is still running"
    assert requests.get(f"{stack.api_url}/readyz", timeout=10).status_code == 200


# The document as the stack serves it (auth off); test_openapi.py checks they are the same.
schema = schemathesis.openapi.from_dict(document(auth_required=False))


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_finds_no_server_error(case: Any, stack: Stack) -> None:
    case.call_and_validate(
        base_url=stack.api_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=60,
    )
