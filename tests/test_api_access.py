"""API keys, job ownership, rate limits, queue back-pressure, Idempotency-Key and cancel:
the app with its own config over real Redis; jobs are queued, not run."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.api_keys import hash_key, new_key, parse_keys
from storage.settings import StorageSettings
from tests.test_api import _error, _jpeg

ALICE, BOB = new_key(), new_key()


@pytest.fixture
def make_app(redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> Callable[..., Flask]:
    """Apps with auth on (keys ALICE and BOB) over the test Redis; jobs are queued, not run."""

    def make(**config: Any) -> Flask:
        return create_app(
            {
                "STORAGE": StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url),
                "ENQUEUE": lambda job_id: None,
                "NOTIFY": lambda job_id: None,
                "AUTH_REQUIRED": True,
                "API_KEYS": {hash_key(ALICE): "alice", hash_key(BOB): "bob"},
                **config,
            }
        )

    return make


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _submit(client: FlaskClient, key: str | None = ALICE, data: bytes | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    headers = {**(_auth(key) if key else {}), **kw.pop("headers", {})}
    form = {"image": (io.BytesIO(data or _jpeg()), "a.jpg"), **kw}
    return client.post(
        "/api/v2/jobs", data=form, headers=headers, content_type="multipart/form-data"
    )


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer ", "Basic YWxpY2U6eA==", "Bearer ck_not-a-key", "Bearer \u00e9\u00e9"],
)
def test_a_job_endpoint_needs_a_known_key(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for response in (
        client.get("/api/v2/jobs/x", headers=headers),
        _submit(client, key=None, headers=headers),
        client.delete("/api/v2/jobs/x", headers=headers),
    ):
        assert response.status_code == 401 and _error(response) == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_health_files_and_the_document_need_no_key(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v2/openapi.json").status_code == 200
    assert client.get("/files/results/nope.webp").status_code == 404


def test_keys_isolate_jobs(client: FlaskClient) -> None:
    response = _submit(client)
    assert response.status_code == 202
    location = response.headers["Location"]
    assert client.get(location, headers=_auth(ALICE)).status_code == 200
    for attempt in (
        client.get(location, headers=_auth(BOB)),
        client.delete(location, headers=_auth(BOB)),
    ):
        assert attempt.status_code == 404 and _error(attempt) == "job_not_found"
    assert client.get(location, headers=_auth(ALICE)).get_json()["status"] == "queued"


def test_keys_are_configured_as_hashes() -> None:
    key = new_key()
    assert parse_keys(f"carol:{hash_key(key)}") == {hash_key(key): "carol"}
    for bad in ("carol", f"carol:{key}", "ca rol:" + "0" * 64, f"a:{'0' * 64},b:{'0' * 64}"):
        with pytest.raises(ValueError):
            parse_keys(bad)


def test_auth_is_on_from_the_environment_unless_switched_off() -> None:
    from api.auth import config_from_env

    with pytest.raises(RuntimeError, match="CUTOUT_API_KEYS"):
        config_from_env({})
    assert config_from_env({"CUTOUT_AUTH": "off"})["AUTH_REQUIRED"] is False
    on = config_from_env({"CUTOUT_API_KEYS": f"dave:{hash_key(ALICE)}"})
    assert on == {"AUTH_REQUIRED": True, "API_KEYS": {hash_key(ALICE): "dave"}}


def test_submits_are_rate_limited_per_key(make_app: Callable[..., Flask]) -> None:
    client = make_app(RATE_LIMIT_SUBMIT="2 per minute").test_client()
    first = _submit(client)
    assert first.status_code == 202
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert 0 < int(first.headers["RateLimit-Reset"]) <= 60
    assert _submit(client).status_code == 202
    refused = _submit(client)
    assert refused.status_code == 429 and _error(refused) == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert _submit(client, key=BOB).status_code == 202, "another key has its own bucket"
    # Reads have their own, larger budget.
    assert client.get(first.headers["Location"], headers=_auth(ALICE)).status_code == 200


def test_a_deep_gpu_queue_answers_503_with_retry_after(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    client = make_app(MAX_QUEUE_DEPTH=3, QUEUE_RETRY_AFTER=7).test_client()
    # Celery's Redis transport keeps a queue as a list under the queue's name.
    redis_client.rpush("gpu", *[b"waiting"] * 2)
    assert _submit(client).status_code == 202  # the third: the limit is reached, not passed
    redis_client.rpush("gpu", b"the third")
    refused = _submit(client)
    assert refused.status_code == 503 and _error(refused) == "queue_full"
    assert refused.headers["Retry-After"] == "7"


def test_idempotent_resubmits_return_the_same_job(client: FlaskClient) -> None:
    key = {"Idempotency-Key": "order-1234"}
    first = _submit(client, headers=key, max_size="300")
    again = _submit(client, headers=key, max_size="300")
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    other = _submit(client, headers=key, max_size="301")
    assert other.status_code == 409 and _error(other) == "idempotency_key_reused"
    other_image = _submit(client, headers=key, data=_jpeg((65, 48)), max_size="300")
    assert other_image.status_code == 409
    # Keys are per API key: bob's "order-1234" is his own.
    bobs = _submit(client, key=BOB, headers=key, max_size="301")
    assert bobs.status_code == 202 and bobs.get_json()["id"] != first.get_json()["id"]
    assert _submit(client).get_json()["id"] != first.get_json()["id"], "no key, a new job"


@pytest.mark.parametrize("bad", ["", " ", "x" * 256, "caf\u00e9"])
def test_a_bad_idempotency_key_is_400(client: FlaskClient, bad: str) -> None:
    response = _submit(client, headers={"Idempotency-Key": bad})
    assert response.status_code == 400 and _error(response) == "invalid_idempotency_key"


def test_a_failed_submit_frees_its_idempotency_key(make_app: Callable[..., Flask]) -> None:
    def broken(job_id: str) -> None:
        raise ConnectionError("broker down")

    key = {"Idempotency-Key": "retry-me"}
    down = _submit(make_app(ENQUEUE=broken).test_client(), headers=key)
    assert down.status_code == 503
    assert _submit(make_app().test_client(), headers=key).status_code == 202


def test_cancel_a_queued_job(client: FlaskClient, tmp_path: Path) -> None:
    job = _submit(client).get_json()
    location = f"/api/v2/jobs/{job['id']}"
    response = client.delete(location, headers=_auth(ALICE))
    assert response.status_code == 200
    assert response.get_json()["status"] == "canceled" and response.get_json()["completed_at"]
    assert not (tmp_path / "files" / "staging" / job["id"]).exists(), "the staged upload goes"
    assert client.delete(location, headers=_auth(ALICE)).status_code == 200, "idempotent"
    assert client.get(location, headers=_auth(ALICE)).get_json()["status"] == "canceled"


def test_a_finished_job_cannot_be_canceled(client: FlaskClient, redis_client: redis.Redis) -> None:
    from dataclasses import replace

    from jobs.store import JobStore

    job = _submit(client).get_json()
    JobStore(redis_client).update(job["id"], lambda r: replace(r, status="succeeded"))
    response = client.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE))
    assert response.status_code == 409 and _error(response) == "job_finished"
    assert client.delete("/api/v2/jobs/nope", headers=_auth(ALICE)).status_code == 404


@pytest.fixture
def notified() -> list[str]:
    return []


@pytest.fixture
def hooked(make_app: Callable[..., Flask], notified: list[str]) -> FlaskClient:
    from jobs.webhooks.settings import WebhookSettings
    from tests.test_webhook_delivery import LOOPBACK, NEW_SECRET

    webhooks = WebhookSettings(secrets=(NEW_SECRET,), allow=LOOPBACK)
    return make_app(WEBHOOKS=webhooks, NOTIFY=notified.append).test_client()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://10.0.0.1/hook", "webhook_url_forbidden"),
        ("http://169.254.169.254/latest/meta-data/", "webhook_url_forbidden"),
        ("http://[::ffff:192.168.0.1]/", "webhook_url_forbidden"),
        ("file:///etc/passwd", "invalid_webhook_url"),
        ("http://user:secret@127.0.0.1/", "invalid_webhook_url"),
        ("not a url", "invalid_webhook_url"),
    ],
)
def test_a_webhook_url_to_a_private_range_or_malformed_is_400(
    hooked: FlaskClient, notified: list[str], url: str, code: str
) -> None:
    response = _submit(hooked, webhook_url=url)
    assert response.status_code == 400 and _error(response) == code


def test_webhooks_need_a_configured_secret(make_app: Callable[..., Flask]) -> None:
    from jobs.webhooks.settings import WebhookSettings

    client = make_app(WEBHOOKS=WebhookSettings()).test_client()
    response = _submit(client, webhook_url="http://127.0.0.1:9/hook")
    assert response.status_code == 400 and _error(response) == "webhooks_disabled"


def test_canceling_a_job_queues_its_webhook(hooked: FlaskClient, notified: list[str]) -> None:
    job = _submit(hooked, webhook_url="http://127.0.0.1:9/hook").get_json()
    assert job["webhook"]["state"] == "pending" and job["webhook"]["attempts"] == 0
    plain = _submit(hooked).get_json()
    assert "webhook" not in plain
    hooked.delete(f"/api/v2/jobs/{plain['id']}", headers=_auth(ALICE))
    hooked.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE))
    hooked.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(ALICE))
    assert notified == [job["id"]], "once, and only for the job that asked"


# --- the result cache meets keys, idempotency, back-pressure, cancel and webhooks -------------


def _cached(client: FlaskClient, photo: bytes, queued: list[str]) -> None:
    """Submit ``photo`` as alice and finish it as a worker would, so it is in the cache."""
    from tests.test_api import ALL_OUTPUTS, _finish_as_a_worker

    first = _submit(client, data=photo)
    assert first.status_code == 202 and queued[-1] == first.get_json()["id"]
    _finish_as_a_worker(client, first.get_json()["id"], ALL_OUTPUTS)


def test_a_cache_hit_is_the_submitters_job(make_app: Callable[..., Flask]) -> None:
    queued: list[str] = []
    client = make_app(ENQUEUE=queued.append).test_client()
    photo = _jpeg((80, 60))
    _cached(client, photo, queued)
    key = {"Idempotency-Key": "bob-1"}
    hit = _submit(client, key=BOB, data=photo, headers=key)
    assert hit.status_code == 200 and hit.get_json()["cache"] == "hit"
    location = hit.headers["Location"]
    assert client.get(location, headers=_auth(BOB)).status_code == 200
    assert client.get(location, headers=_auth(ALICE)).status_code == 404, "bob's, not alice's"
    again = _submit(client, key=BOB, data=photo, headers=key)
    assert again.status_code == 200 and again.get_json()["id"] == hit.get_json()["id"]
    assert len(queued) == 1


def test_a_full_queue_still_answers_cache_hits(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    queued: list[str] = []
    client = make_app(ENQUEUE=queued.append, MAX_QUEUE_DEPTH=1).test_client()
    photo = _jpeg((80, 60))
    _cached(client, photo, queued)
    redis_client.rpush("gpu", b"waiting")
    assert _submit(client, data=photo).status_code == 200
    refused = _submit(client, data=_jpeg((81, 60)))
    assert refused.status_code == 503 and _error(refused) == "queue_full"
    assert len(queued) == 1


def test_canceling_a_leader_hands_its_followers_over(
    make_app: Callable[..., Flask], notified: list[str]
) -> None:
    from jobs.webhooks.settings import WebhookSettings
    from tests.test_api import ALL_OUTPUTS, _finish_as_a_worker
    from tests.test_webhook_delivery import LOOPBACK, NEW_SECRET

    queued: list[str] = []
    webhooks = WebhookSettings(secrets=(NEW_SECRET,), allow=LOOPBACK)
    client = make_app(ENQUEUE=queued.append, WEBHOOKS=webhooks, NOTIFY=notified.append)
    client = client.test_client()
    hook = {"webhook_url": "http://127.0.0.1:9/hook"}
    photo = _jpeg((80, 60))
    leader = _submit(client, data=photo, **hook).get_json()
    followers = [_submit(client, key=BOB, data=photo, **hook).get_json() for _ in range(3)]
    assert [f["cache"] for f in followers] == ["joined"] * 3 and queued == [leader["id"]]

    def cancel(job: dict[str, Any], key: str = BOB) -> None:
        assert client.delete(f"/api/v2/jobs/{job['id']}", headers=_auth(key)).status_code == 200

    cancel(followers[2])  # an attached job leaves its leader's list
    cancel(leader, ALICE)  # the first follower leads now, the second attaches to it
    assert queued == [leader["id"], followers[0]["id"]]
    svc = client.application.extensions["cutout"]
    assert svc.jobs.get(followers[1]["id"]).joined_job == followers[0]["id"]
    _finish_as_a_worker(client, followers[0]["id"], ALL_OUTPUTS)
    done = [client.get(f"/api/v2/jobs/{f['id']}", headers=_auth(BOB)).get_json() for f in followers]
    assert [d["status"] for d in done] == ["succeeded", "succeeded", "canceled"]
    hit = _submit(client, data=photo, **hook).get_json()
    assert hit["status"] == "succeeded"
    # The job store's hook queued each job's webhook once, however the job ended.
    ended = [followers[2]["id"], leader["id"], followers[0]["id"], followers[1]["id"], hit["id"]]
    assert notified == ended
